"""The generated Markdown pages: home, explore, chart, taxonomy and one page per paper.

Everything here is pure string building from validated entries and the
vocabulary (no mkdocs import), so it is fast to test. Catalog text goes
through :func:`md_text` / :func:`html_text`; links to other pages are relative
``.md`` links, which mkdocs checks in strict mode. Raw-HTML links (the chart
table) are written relative to the rendered URL, which is fixed because the
config pins ``use_directory_urls: true``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from mi_catalog import vocab
from mi_catalog.impl_info import ImplInfo
from mi_catalog.schema import Entry
from mi_catalog.site.text import bibtex_entry, html_text, md_text, yaml_string
from mi_catalog.stats import compute_stats, format_markdown

SURVEY_URL = "https://arxiv.org/abs/2601.14004"


@dataclass(frozen=True)
class Page:
    path: str  # relative to docs/, with forward slashes
    markdown: str


def paper_path(entry_id: str) -> str:
    return f"papers/{entry_id}.md"


def term_path(facet: vocab.Facet, term_id: str) -> str:
    return f"taxonomy/{facet.name}/{term_id}.md"


def facet_path(facet: vocab.Facet) -> str:
    return f"taxonomy/{facet.name}/index.md"


def explore_query(**filters: str) -> str:
    """The explore page's query string for some filters: the URL keys of :class:`mi_catalog.query.QueryParams`
    (the CLI's flag names; ``q`` for the text)."""
    from mi_catalog.query import url_keys

    unknown = set(filters) - set(url_keys())
    if unknown:
        raise ValueError(f"not explore-page parameters: {', '.join(sorted(unknown))}")
    return "?" + urlencode(filters) if filters else ""


def sort_papers(entries: Iterable[Entry]) -> list[Entry]:
    """Newest first, then by title: the order of every paper list on the site."""
    return sorted(entries, key=lambda e: (-e.year, e.title.casefold(), e.id))


def front_matter(title: str, *, hide: Sequence[str] = ()) -> str:
    # The page title goes in front matter, HTML-escaped: Material prints
    # page.meta.title unescaped into <title> and the header, while a title taken
    # from the H1 would be passed through `striptags`, which unescapes entities.
    lines = ["---", f"title: {yaml_string(html_text(title))}"]
    if hide:
        lines.append("hide: [" + ", ".join(hide) + "]")
    lines.append("---")
    return "\n".join(lines) + "\n\n"


def papers_with(entries: Sequence[Entry], facet: vocab.Facet, term_ids: Iterable[str]) -> list[Entry]:
    wanted = set(term_ids)
    return [e for e in entries if wanted.intersection(e.facet_values(facet))]


def term_ids_of(facet: vocab.Facet, term: vocab.Term) -> tuple[str, ...]:
    """The leaf ids a term stands for: itself, or a group's children."""
    return facet.children(term.id) if term in facet.groups else (term.id,)


def rel(from_path: str, to_path: str) -> str:
    """Relative link between two docs files (both relative to docs/)."""
    from_parts = from_path.split("/")[:-1]
    to_parts = to_path.split("/")
    common = 0
    while common < min(len(from_parts), len(to_parts) - 1) and from_parts[common] == to_parts[common]:
        common += 1
    return "/".join([".."] * (len(from_parts) - common) + to_parts[common:])


def url_rel(from_path: str, to_url: str) -> str:
    """Relative URL from a docs file's rendered page to a site URL like ``explore/``."""
    depth = from_path.count("/") + (0 if from_path.endswith("index.md") else 1)
    return "../" * depth + to_url


# --- paper lists ------------------------------------------------------------------


def paper_list(entries: Sequence[Entry], from_path: str) -> str:
    if not entries:
        return "*No papers yet.*\n"
    lines = [
        f"- [{md_text(e.title)}]({rel(from_path, paper_path(e.id))}) — {e.year}, {md_text(venue_text(e))}"
        for e in sort_papers(entries)
    ]
    return "\n".join(lines) + "\n"


def venue_text(entry: Entry) -> str:
    return f"{entry.venue} ({entry.venue_detail})" if entry.venue_detail else entry.venue


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --- home -------------------------------------------------------------------------


def runnable_list(entries: Sequence[Entry], impls: dict[str, ImplInfo], from_path: str) -> str:
    """One line per reference implementation: its command and the catalog papers it reproduces."""
    known = {e.id for e in entries}
    lines = []
    for info in sorted(impls.values(), key=lambda i: i.id):
        papers = [e for e in entries if e.id in info.reproduces or info.id in e.impls]
        links = ", ".join(f"[{md_text(e.title)}]({rel(from_path, paper_path(e.id))})" for e in sort_papers(papers))
        reproduces = f" — reproduces {links}" if links else ""
        missing = [r for r in info.reproduces if r not in known]
        lines.append(f"- `mi-catalog run {info.id}`: {md_text(info.title)}{reproduces}"
                     + (f" (also: {', '.join(f'`{m}`' for m in missing)})" if missing else ""))
    return "\n".join(lines) + "\n" if lines else "*None yet.*\n"


def home_page(entries: Sequence[Entry], impls: dict[str, ImplInfo] | None = None) -> Page:
    path = "index.md"
    facet_lines = "\n".join(
        f"- [{md_text(f.label)}]({rel(path, facet_path(f))}) (`{f.name}`): {md_text(f.description)}"
        for f in vocab.FACETS
    )
    example = explore_query(object="head", method="probe")
    body = f"""{front_matter("mi-catalog")}# mi-catalog

A searchable, runnable catalog of **actionable mechanistic interpretability**: {plural(len(entries), "paper")}
that locate a part of a language model, steer it, and improve the model with it — organised as in the survey
[*Locate, Steer, and Improve*]({SURVEY_URL}) (arXiv 2601.14004).

## The pipeline: Locate → Steer → Improve

1. **Locate** an interpretable *object* (a head, a neuron, an SAE feature, a circuit…) with a *localizing method*
   (probing, causal attribution, vocabulary projection…).
2. **Steer** it: scale or zero activations, edit the located weights, or add a direction.
3. **Improve** the model: safety, fairness, knowledge, reasoning, multilinguality, efficiency.

Every paper is tagged along four facets from one controlled vocabulary:

{facet_lines}

## Find papers

- [Explore](explore.md) — filter by facet, venue and year, and search titles; every view is a shareable URL,
  e.g. [heads found by probing](explore.md{example}).
- [Chart](chart.md) — object × method and object × steering counts; empty cells are research gaps.
- [Taxonomy](taxonomy/index.md) — every vocabulary value with its description and papers.

The same queries work on the command line (aliases such as `head` or `probe` are accepted everywhere):

```bash
mi-catalog query --object head --method probe
mi-catalog query --application alignment --year 2024 "refusal"
```

## Run a reference implementation

Some papers link to a small reference implementation you can run on a local model:

```bash
pip install 'mi-catalog[run]'
mi-catalog run logit-lens
```

Available implementations:

{runnable_list(entries, impls or {}, path)}
Every paper runs: its page's **Run it** section gives the command, `mi-catalog run PAPER_ID`, which runs the
paper's reproduction when one exists, and otherwise a pipeline composed from its tags — the survey's method
family applied to the toy model (locate, steer, measure the improvement and its cost), not the paper's exact
algorithm. `mi-catalog pipeline --object X --method Y --steer Z --task T` runs any combination, including the
chart's empty cells.

## Coverage

How complete the catalog is and how much of it was checked against the papers themselves
(the same figures as `mi-catalog stats`):

{format_markdown(compute_stats(entries))}"""
    return Page(path, body)


# --- explore ----------------------------------------------------------------------


def explore_page(data_version: str = "") -> Page:
    # The page is a shell; assets/explore.js builds the UI from assets/explore-data.json.
    # The data URL carries a content hash so a browser never pairs a new page with stale cached data.
    version = f"?v={data_version}" if data_version else ""
    body = f"""{front_matter("Explore", hide=("navigation", "toc"))}# Explore

<div id="mi-explore" class="mi-explore" data-src="../assets/explore-data.json{version}" data-papers="../papers/">
<noscript>The explore page needs JavaScript. Without it, browse the <a href="../taxonomy/">taxonomy</a>
or use <code>mi-catalog query</code>.</noscript>
</div>
"""
    return Page("explore.md", body)


# --- chart (object × method, object × steer) --------------------------------------------


def pair_counts(entries: Sequence[Entry], rows: vocab.Facet, cols: vocab.Facet) -> dict[tuple[str, str], int]:
    counts = {(r, c): 0 for r in rows.ids for c in cols.ids}
    for e in entries:
        for r in e.facet_values(rows):
            for c in e.facet_values(cols):
                counts[(r, c)] += 1
    return counts


def cell_command(rows: vocab.Facet, row: str, cols: vocab.Facet, col: str) -> str:
    """The `mi-catalog pipeline` command that runs a chart cell (object × method or object × steering) on the toy."""
    from mi_catalog.methods.plan import standard_method

    values = {rows.name: row, cols.name: col}
    obj = values.get("object", "")
    method = values.get("method") or standard_method(obj)
    steer = f" --steer {values['steer']}" if "steer" in values else ""
    return f"mi-catalog pipeline --object {obj} --method {method}{steer}"


def chart_table(entries: Sequence[Entry], rows: vocab.Facet, cols: vocab.Facet, from_path: str) -> str:
    counts = pair_counts(entries, rows, cols)
    explore = url_rel(from_path, "explore/")
    head = "".join(f'<th scope="col">{html_text(cols.term(c).label)}</th>' for c in cols.ids)
    lines = [
        f'<table class="mi-chart" data-rows="{rows.name}" data-cols="{cols.name}">',
        f"<thead><tr><th>{html_text(rows.label)} \\ {html_text(cols.label)}</th>{head}</tr></thead>",
        "<tbody>",
    ]
    for r in rows.ids:
        cells = []
        for c in cols.ids:
            n = counts[(r, c)]
            href = html_text(explore + explore_query(**{rows.name: r, cols.name: c}))
            cls = "mi-cell mi-gap" if n == 0 else "mi-cell"
            title = html_text(f"{rows.term(r).label} × {cols.term(c).label}: {plural(n, 'paper')} — run: "
                              f"{cell_command(rows, r, cols, c)}")  # fmt: skip
            cells.append(
                f'<td class="{cls}" data-row="{r}" data-col="{c}" data-count="{n}">'
                f'<a href="{href}" title="{title}">{n}</a></td>'
            )
        lines.append(f'<tr><th scope="row">{html_text(rows.term(r).label)}</th>{"".join(cells)}</tr>')
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines) + "\n"


def chart_page(entries: Sequence[Entry]) -> Page:
    path = "chart.md"
    body = f"""{front_matter("Chart")}# Chart

The survey's searchable chart: how many papers pair each interpretable object with each localizing method
and each steering method. Every number opens the explore page for that pair; empty cells
(<span class="mi-gap-sample">0</span>) are combinations nobody in the catalog has tried — research gaps.
Every cell, empty ones included, is also a runnable experiment on the toy model: hover it for its
`mi-catalog pipeline` command (locate with that object and method, steer, measure the improvement and its cost).

## Object × localizing method

{chart_table(entries, vocab.OBJECT, vocab.METHOD, path)}
## Object × steering method

{chart_table(entries, vocab.OBJECT, vocab.STEER, path)}"""
    return Page(path, body)


# --- taxonomy ---------------------------------------------------------------------------


def taxonomy_index_page(entries: Sequence[Entry]) -> Page:
    path = "taxonomy/index.md"
    parts = [front_matter("Taxonomy"), "# Taxonomy\n\n",
             "One controlled vocabulary tags every paper along four facets. "
             "The same ids and aliases work in `mi-catalog query` and in the explore page's URL.\n\n"]
    for f in vocab.FACETS:
        parts.append(f"## [{md_text(f.label)}]({rel(path, facet_path(f))})\n\n{md_text(f.description)}\n\n")
        parts.append(term_table(entries, f, path))
        parts.append("\n")
    return Page(path, "".join(parts))


def term_table(entries: Sequence[Entry], facet: vocab.Facet, from_path: str) -> str:
    rows = ["| Value | Id | Papers | Description |", "| --- | --- | ---: | --- |"]
    terms: list[vocab.Term] = []
    for group in facet.groups:
        terms.append(group)
        terms.extend(facet.term(c) for c in facet.children(group.id))
    terms.extend(t for t in facet.terms if t.parent is None)
    for t in terms:
        n = len(papers_with(entries, facet, term_ids_of(facet, t)))
        label = md_text(t.label) if t in facet.groups or not facet.groups else "↳ " + md_text(t.label)
        if t in facet.groups:
            label = f"**{label}**"
        link = f"[{label}]({rel(from_path, term_path(facet, t.id))})"
        rows.append(f"| {link} | `{t.id}` | {n} | {md_text(t.description)} |")
    return "\n".join(rows) + "\n"


def facet_page(entries: Sequence[Entry], facet: vocab.Facet) -> Page:
    path = facet_path(facet)
    body = (
        f"{front_matter(facet.label)}# {md_text(facet.label)}\n\n{md_text(facet.description)} "
        f"Query it with `mi-catalog query --{facet.name} VALUE` or "
        f"[explore](../../explore.md{explore_query()}).\n\n{term_table(entries, facet, path)}"
    )
    return Page(path, body)


def term_page(entries: Sequence[Entry], facet: vocab.Facet, term: vocab.Term) -> Page:
    path = term_path(facet, term.id)
    papers = papers_with(entries, facet, term_ids_of(facet, term))
    lines = [front_matter(f"{term.label} ({facet.label})"), f"# {md_text(term.label)}\n\n"]
    lines.append(f"*{md_text(facet.label)}* · id `{term.id}`")
    if term.parent:
        parent = facet.term(term.parent)
        lines.append(f" · part of [{md_text(parent.label)}]({rel(path, term_path(facet, parent.id))})")
    lines.append(f"\n\n{md_text(term.description)}\n\n")
    if term in facet.groups:
        children = ", ".join(
            f"[{md_text(facet.term(c).label)}]({rel(path, term_path(facet, c))})" for c in facet.children(term.id)
        )
        lines.append(f"Covers: {children}.\n\n")
    if term.aliases:
        lines.append("Also accepted: " + ", ".join(f"`{a}`" for a in term.aliases) + ".\n\n")
    explore = rel(path, "explore.md") + explore_query(**{facet.name: term.id})
    lines.append(
        f"**{plural(len(papers), 'paper')}** — [open in explore]({explore}) · "
        f"`mi-catalog query --{facet.name} {term.id}`\n\n"
    )
    lines.append(paper_list(papers, path))
    return Page(path, "".join(lines))


# --- paper ------------------------------------------------------------------------------


def paper_page(entry: Entry, impls: dict[str, ImplInfo]) -> Page:
    path = paper_path(entry.id)
    explore = rel(path, "explore.md")
    out = [front_matter(entry.title), f"# {md_text(entry.title)}\n\n"]
    meta = [f"**{entry.year}**", f"**{md_text(entry.venue)}**"]
    if entry.venue_detail:
        meta[-1] += f" ({md_text(entry.venue_detail)})"
    out.append(" · ".join(meta) + "\n\n")
    if entry.authors:
        out.append(md_text(", ".join(entry.authors)) + "\n\n")
    out.append(links_line(entry) + "\n\n")
    if entry.summary:
        out.append(f"## Summary\n\n{md_text(entry.summary)}\n\n")
    out.append("## Tags\n\n")
    for facet in vocab.FACETS:
        values = entry.facet_values(facet)
        shown = ", ".join(
            f'[{md_text(facet.term(v).label)}]({explore}{explore_query(**{facet.name: v})}){{ .mi-tag }}'
            for v in values
        )
        out.append(f"- **{md_text(facet.label)}:** {shown or '—'}\n")
    out.append(f"- **Venue:** [{md_text(entry.venue)}]({explore}{explore_query(venue=entry.venue)}){{ .mi-tag }}\n")
    out.append(f"- **Year:** [{entry.year}]({explore}{explore_query(year=str(entry.year))}){{ .mi-tag }}\n\n")
    out.append(impls_section(entry, impls))
    out.append(run_it_section(entry, impls))
    out.append(provenance_section(entry, path))
    if entry.notes:
        out.append("## Corrections\n\nChanges made to the survey's data for this entry, and why:\n\n")
        out.extend(f"- {md_text(note)}\n" for note in entry.notes)
        out.append("\n")
    out.append("## Cite\n\n")
    # Raw <pre> with escaped text: a fenced block could be closed early by backticks in a title.
    out.append(f'<pre class="mi-bibtex"><code>{html_text_block(bibtex_entry(entry))}</code></pre>\n')
    return Page(path, "".join(out))


def html_text_block(text: str) -> str:
    """Multi-line text for a <pre>: escaped, newlines kept, no blank lines (they would end the HTML block)."""
    import html

    return html.escape(text, quote=True).replace("\n\n", "\n")


def external_link(url: str, label: str) -> str:
    # Raw HTML, attribute-escaped: a schema-valid URL may still hold ")" or "<", which would end a Markdown link.
    return f'<a href="{html_text(url)}">{md_text(label)}</a>'


def links_line(entry: Entry) -> str:
    links = [external_link(entry.links.paper, "Paper")]
    if entry.links.arxiv:
        links.append(external_link(f"https://arxiv.org/abs/{entry.links.arxiv}", f"arXiv:{entry.links.arxiv}"))
    if entry.links.code:
        links.append(external_link(entry.links.code, "Code"))
    return " · ".join(links)


def impl_ids_for(entry: Entry, impls: dict[str, ImplInfo]) -> list[str]:
    """Implementations the entry names, plus those declaring that they reproduce it."""
    ids = list(entry.impls)
    ids += sorted(i.id for i in impls.values() if entry.id in i.reproduces and i.id not in ids)
    return ids


def impls_section(entry: Entry, impls: dict[str, ImplInfo]) -> str:
    ids = impl_ids_for(entry, impls)
    if not ids:
        return ""
    lines = ["## Reference implementations\n\n"]
    for impl_id in ids:
        info = impls.get(impl_id)
        if info is None:
            lines.append(f"- `{impl_id}` — not available in this version of mi-catalog\n")
            continue
        tags = [vocab.FACETS_BY_FIELD[field].term(v).label
                for field, values in (("objects", info.objects), ("methods", info.methods), ("steering", info.steering))
                for v in values if v in vocab.FACETS_BY_FIELD[field].ids]
        shown_tags = f" ({md_text(', '.join(tags))})" if tags else ""
        bench = f" · [benchmark](../benchmark/{info.id}.md)" if info.id in benchmarked() else ""
        lines.append(f"- **{md_text(info.title)}**{shown_tags} — run it with `mi-catalog run {info.id}`{bench}\n")
    lines.append("\n")
    return "".join(lines)


def benchmarked() -> frozenset[str]:
    """Implementations with rows in the committed bench result (each has a page under benchmark/)."""
    from mi_catalog.bench.site import benchmarked_impls

    return benchmarked_impls()


def run_it_section(entry: Entry, impls: dict[str, ImplInfo]) -> str:
    """The exact command that runs this paper (as `mi-catalog run ENTRY` does) and whether it is a reproduction
    or a pipeline; from the plan layer, the same as the CLI's `--plan`."""
    from mi_catalog.methods.plan import goal_for, plan_for

    plan = plan_for(entry, impls)
    lines = ["## Run it\n\n", f"```bash\n{plan.command}\n```\n\n"]
    if plan.kind == "reproduction":
        lines.append(f"**Reproduction** — runs `{plan.impl}`, the paper's own algorithm on the toy model "
                     f"(what it simplifies: `mi-catalog impls {plan.impl}`).\n\n")  # fmt: skip
        return "".join(lines)
    family = plan.describe("the toy model").removeprefix("pipeline: ")
    object_label = vocab.OBJECT.term(str(plan.object)).label
    locate = f"`{plan.locator}` runs the locate stage ({object_label}) on task `{plan.task}`"
    if plan.prune:
        then = f"the least important located units are pruned; improve = {goal_for(str(plan.task), True).text}"
    elif plan.steer:
        steer = vocab.STEER.term(plan.steer).label.lower()
        then = (f"a generic {steer} steerer acts on what it found; improve = {goal_for(str(plan.task)).text}, "
                "with its cost on the model's other tasks")  # fmt: skip
    else:
        then = "no steering tag, so only the locate stage runs"
    why = "its tags cannot compose a pipeline" if not plan.composed else "no reference implementation reproduces it yet"
    lines.append(f"**Pipeline** — {why}, so this runs {family}: {locate}; {then}.\n\n")
    lines.extend(f"- {note}\n" for note in plan.substitutions)
    if plan.substitutions:
        lines.append("\n")
    lines.append(f"The same pipeline: `{plan.pipeline_command}`.\n\n")
    return "".join(lines)


def provenance_section(entry: Entry, path: str) -> str:
    prov = entry.provenance
    if prov.source == "awesome-actionable-mi-survey":
        where = f"Listed by the survey [*Locate, Steer, and Improve*]({SURVEY_URL})"
        if prov.sections:
            sections = ", ".join(
                f"[{md_text(vocab.APPLICATION.term(s).label)}]({rel(path, term_path(vocab.APPLICATION, s))})"
                for s in prov.sections
            )
            where += f" in: {sections}"
        text = where + "."
    else:
        text = "Added by the mi-catalog project (not in the survey's list)."
    return f"## Provenance\n\n{text}\n\n"


# --- everything -------------------------------------------------------------------------


def results_page(record: dict[str, Any] | None) -> Page:
    """What each method finds on a real model next to the paper's claim (from the committed record)."""
    from mi_catalog.methods.claims import render_markdown

    head = front_matter("Results on a real model") + "# What the methods find on a real model\n\n"
    if record is None:
        return Page("results.md", head + "No results record is committed yet.\n")
    body = (
        f"Each reference implementation run on **{record['model']}** (SmolLM2-135M-Instruct, dequantised 4-bit "
        "weights) with the English task sets, next to the claim of the paper it comes from. A verdict is decided "
        "by a simple criterion on the run's own numbers, stated per row below; *n/a* means the model lacks the "
        f"behaviour. Re-measure with `{record['command']}`.\n\n"
    )
    criteria = "\n".join(f"- `{r['impl']}` on {r['task']}: {r['criterion']}." for r in record["rows"])
    return Page("results.md", head + body + render_markdown(record) + "\n## Criteria\n\n" + criteria + "\n")


def benchmark_pages() -> list[Page]:
    """The Benchmark page, one page per benchmarked implementation and the plots, from the committed bench result."""
    from mi_catalog.bench.rows import committed_result
    from mi_catalog.bench.site import bench_pages

    return [Page(path, text) for path, text in bench_pages(committed_result("toy"))]


def all_pages(entries: Sequence[Entry], impls: dict[str, ImplInfo], data_version: str = "") -> list[Page]:
    from mi_catalog.methods.claims import load_record

    pages = [home_page(entries, impls), explore_page(data_version), chart_page(entries), taxonomy_index_page(entries),
             results_page(load_record())]  # fmt: skip
    pages.extend(benchmark_pages())
    for facet in vocab.FACETS:
        pages.append(facet_page(entries, facet))
        pages.extend(term_page(entries, facet, t) for t in (*facet.groups, *facet.terms))
    pages.extend(paper_page(e, impls) for e in entries)
    return pages
