/* The explore page: facet filters, free text and live counts over assets/explore-data.json.
 *
 * Semantics mirror `mi-catalog query`: OR within a facet, AND across facets;
 * values are resolved through the vocabulary's alias maps (exported by
 * mi_catalog/site/explore_data.py, never re-typed here), and a word or prefix
 * naming exactly one value resolves as in the CLI. Free text is the CLI's query
 * language — words, "phrases", OR, NOT, prefix* / wild?cards, field:, (groups) —
 * ported line by line from mi_catalog/textquery.py (lex, parse, matches) and
 * evaluated on each paper's analyzed tokens per field. State lives in the query
 * string under the CLI's flag names, so every view is a URL.
 *
 * Catalog text only ever reaches the DOM through textContent / attributes.
 * Loaded on every page by mkdocs (extra_javascript); does nothing elsewhere.
 */
(function () {
  "use strict";

  var root = document.getElementById("mi-explore");
  if (!root) return;

  var PAGE_SIZE = 100;

  // --- small DOM helper: never sets HTML ---------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === null || value === undefined || value === false) return;
        if (key === "text") node.textContent = value;
        else if (key === "className") node.className = value;
        else node.setAttribute(key, value === true ? "" : String(value));
      });
    }
    (children || []).forEach(function (child) {
      if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  // --- the same normalisation as vocab.normalize_key -----------------------------------
  function normalizeKey(value) {
    return value.trim().toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  }

  function compileTokenizer(text) {
    // Whoosh's default pattern \w+(\.?\w+)* with Python's Unicode \w (letters, numbers, "_").
    var word = "[\\p{L}\\p{N}_]";
    var pattern = new RegExp(word + "+(?:\\." + word + "+)*", "gu");
    var stops = new Set(text.stopWords);
    return function (query) {
      // In order, repeats kept: a phrase is a sequence.
      var out = [];
      (query.match(pattern) || []).forEach(function (raw) {
        var token = raw.toLowerCase();
        if (token.length >= text.minLength && !stops.has(token)) out.push(token);
      });
      return out;
    };
  }

  // --- the query language: a port of mi_catalog/textquery.py (lex, parse, matches) ------
  function QueryError(message) { this.message = message; }

  function malformed(text, why) { return new QueryError("malformed query '" + text + "': " + why); }

  function isSpace(ch) { return /\s/.test(ch); }

  function lex(text, fields, operators) {
    var out = [], i = 0, n = text.length, pending = null;
    var needs = function (name) { return malformed(text, name + ": needs a word, a phrase or a group right after it"); };
    while (i < n) {
      var ch = text[i];
      if (isSpace(ch)) {
        if (pending !== null) throw needs(pending);
        i += 1;
      } else if (ch === "(" || ch === ")") {
        if (ch === ")" && pending !== null) throw needs(pending);
        out.push({ kind: ch, text: "", field: ch === "(" ? pending : null });
        pending = null;
        i += 1;
      } else if (ch === '"') {
        var end = text.indexOf('"', i + 1);
        if (end < 0) throw malformed(text, "unbalanced double quote");
        out.push({ kind: "phrase", text: text.slice(i + 1, end), field: pending });
        pending = null;
        i = end + 1;
      } else {
        var j = i;
        while (j < n && !isSpace(text[j]) && '()"'.indexOf(text[j]) < 0) j += 1;
        var w = text.slice(i, j);
        i = j;
        var m = /^([\p{L}\p{N}_]+):([\s\S]*)$/u.exec(w);
        if (m && pending === null) {
          if (fields.indexOf(m[1]) < 0) {
            throw malformed(text, "unknown field '" + m[1] + "' (searchable fields: " + fields.join(", ") +
                            "; use --object/--method/... for facets)");
          }
          if (m[2]) out.push({ kind: "word", text: m[2], field: m[1] });
          else if (i < n && '("'.indexOf(text[i]) >= 0) pending = m[1];
          else throw needs(m[1]);
        } else if (pending === null && operators.indexOf(w) >= 0) {
          out.push({ kind: "op", text: w, field: null });
        } else {
          out.push({ kind: "word", text: w, field: pending });
          pending = null;
        }
      }
    }
    if (pending !== null) throw needs(pending);
    return out;
  }

  // The query tree, or null when nothing constrains (empty, or only stop words). Throws QueryError.
  function parseText(text, analyze, fields, operators) {
    var lexemes = lex(text, fields, operators), pos = 0;

    function group(field, depth) {
      var items = [];
      while (pos < lexemes.length) {
        var lx = lexemes[pos];
        pos += 1;
        if (lx.kind === ")") {
          if (depth === 0) throw malformed(text, "unbalanced parentheses");
          return items;
        }
        if (lx.kind === "(") items.push(reduce(group(lx.field || field, depth + 1)));
        else if (lx.kind === "op") items.push(lx.text);
        else items.push(leaf(lx, lx.field || field));
      }
      if (depth > 0) throw malformed(text, "unbalanced parentheses");
      return items;
    }

    function leaf(lx, field) {
      if (lx.kind === "word" && (lx.text.indexOf("*") >= 0 || lx.text.indexOf("?") >= 0)) {
        var pattern = lx.text.toLowerCase();
        if (!pattern.replace(/[*?]/g, "")) throw malformed(text, "'" + lx.text + "' needs letters besides wildcards");
        return { type: "pattern", field: field, regex: globRegex(pattern) };
      }
      var tokens = analyze(lx.text);
      return tokens.length ? { type: "words", field: field, tokens: tokens } : null;
    }

    function isOp(item) { return typeof item === "string"; }

    function reduce(items) {
      // NOT (prefix, right to left), then AND, then OR (infix, left to right), then juxtaposition.
      items = items.slice();
      for (var i = items.length - 1; i >= 0; i--) {
        if (items[i] === "NOT") {
          if (i + 1 >= items.length || isOp(items[i + 1])) throw malformed(text, "NOT needs a word after it");
          var operand = items[i + 1];
          items.splice(i, 2, operand === null ? null : { type: "not", item: operand });
        }
      }
      ["AND", "OR"].forEach(function (op) {
        var k = 0;
        while (k < items.length) {
          if (items[k] === op) {
            if (k === 0 || k + 1 >= items.length || isOp(items[k - 1]) || isOp(items[k + 1])) {
              throw malformed(text, op + " needs words on both sides");
            }
            items.splice(k - 1, 3, combine(op === "AND" ? "and" : "or", [items[k - 1], items[k + 1]]));
          } else {
            k += 1;
          }
        }
      });
      return combine("and", items);
    }

    function combine(type, parts) {
      var flat = [];
      parts.forEach(function (part) {
        if (part === null) return;  // only stop words: no constraint
        if (part.type === type) flat.push.apply(flat, part.items); else flat.push(part);
      });
      if (!flat.length) return null;
      return flat.length === 1 ? flat[0] : { type: type, items: flat };
    }

    return reduce(group(null, 0));
  }

  function globRegex(pattern) {
    var body = pattern.split("").map(function (c) {
      return c === "*" ? "[\\s\\S]*" : c === "?" ? "[\\s\\S]" : c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    }).join("");
    return new RegExp("^" + body + "$", "u");
  }

  // Does a paper (field name -> its analyzed tokens, in order) match the tree?
  function matches(node, paper, fields) {
    if (node.type === "and") return node.items.every(function (n) { return matches(n, paper, fields); });
    if (node.type === "or") return node.items.some(function (n) { return matches(n, paper, fields); });
    if (node.type === "not") return !matches(node.item, paper, fields);
    var names = node.field ? [node.field] : fields;
    for (var f = 0; f < names.length; f++) {
      var seq = paper.fields[names[f]] || [];
      if (node.type === "pattern") {
        for (var t = 0; t < seq.length; t++) if (node.regex.test(seq[t])) return true;
      } else {
        var k = node.tokens.length;
        if (k === 1) {
          if (paper.sets[names[f]].has(node.tokens[0])) return true;
          continue;
        }
        for (var i = 0; i + k <= seq.length; i++) {
          var ok = true;
          for (var j = 0; j < k && ok; j++) ok = seq[i + j] === node.tokens[j];
          if (ok) return true;
        }
      }
    }
    return false;
  }

  // --- model --------------------------------------------------------------------------
  function buildModel(data) {
    var facets = data.facets.map(function (f, k) {
      var index = new Map();
      f.values.forEach(function (v, i) { index.set(v.id, i); });
      var groupOf = f.values.map(function () { return -1; });
      f.groups.forEach(function (g, gi) {
        g.children.forEach(function (c) { if (index.has(c)) groupOf[index.get(c)] = gi; });
      });
      return { k: k, name: f.name, label: f.label, kind: f.kind, values: f.values, groups: f.groups,
               aliases: f.aliases, range: f.range, index: index, groupOf: groupOf };
    });
    var textFields = data.text.fields;
    var papers = data.papers.map(function (p) {
      var fields = {}, sets = {};
      textFields.forEach(function (name, i) {
        fields[name] = p[4][i] ? p[4][i].split(" ") : [];
        sets[name] = new Set(fields[name]);
      });
      return { id: p[0], title: p[1], year: p[2], tags: p[3], fields: fields, sets: sets };
    });
    // One global order (newest first, then title), so filtered results need no sorting.
    var order = papers.map(function (_, i) { return i; });
    order.sort(function (a, b) {
      var pa = papers[a], pb = papers[b];
      if (pa.year !== pb.year) return pb.year - pa.year;
      var ta = pa.title.toLowerCase(), tb = pb.title.toLowerCase();
      if (ta !== tb) return ta < tb ? -1 : 1;
      return pa.id < pb.id ? -1 : pa.id > pb.id ? 1 : 0;
    });
    var byName = {};
    facets.forEach(function (f) { byName[f.name] = f; });
    var tokenize = compileTokenizer(data.text);
    return { facets: facets, byName: byName, papers: papers, order: order, textKey: data.text.key,
             textFields: textFields,
             parse: function (text) { return parseText(text, tokenize, textFields, data.text.operators); } };
  }

  // Resolve one URL value to canonical ids, as the CLI does (mi_catalog.facets.FacetKind.resolve);
  // throws a message when unknown or ambiguous.
  function resolveValue(facet, raw) {
    if (facet.kind === "year") {
      var year = /^\s*-?\d+\s*$/.test(raw) ? parseInt(raw, 10) : NaN;
      if (isNaN(year) || year < facet.range[0] || year > facet.range[1]) throw "Unknown year \u201c" + raw + "\u201d";
      return [String(year)];
    }
    var key = normalizeKey(raw);
    var id = Object.prototype.hasOwnProperty.call(facet.aliases, key) ? facet.aliases[key] : undefined;
    if (id === undefined) {
      var candidates = wordMatches(facet, key);
      if (candidates.length > 1) {
        throw "Ambiguous " + facet.name + " \u201c" + raw + "\u201d: could be " + candidates.join(", ");
      }
      if (!candidates.length) throw "Unknown " + facet.name + " \u201c" + raw + "\u201d";
      id = candidates[0];
    }
    for (var i = 0; i < facet.groups.length; i++) {
      if (facet.groups[i].id === id) return facet.groups[i].children.slice();
    }
    return [id];
  }

  // A port of vocab.Facet.word_matches: ids with a spelling that key is a word or a prefix of.
  function wordMatches(facet, key) {
    if (key.length < 2) return [];
    var found = [];
    Object.keys(facet.aliases).forEach(function (spelling) {
      var id = facet.aliases[spelling];
      var hit = spelling.indexOf(key) === 0 || spelling.split("-").some(function (w) { return w.indexOf(key) === 0; });
      if (hit && found.indexOf(id) < 0) found.push(id);
    });
    var groupIds = facet.groups.map(function (g) { return g.id; });
    if (found.some(function (f) { return groupIds.indexOf(f) >= 0; })) {
      found = found.filter(function (f) {
        if (groupIds.indexOf(f) >= 0) return true;
        var parent = facet.index.has(f) ? facet.values[facet.index.get(f)].parent : null;
        return found.indexOf(parent) < 0;
      });
    }
    var order = groupIds.concat(facet.values.map(function (v) { return v.id; }));
    return found.sort(function (a, b) { return order.indexOf(a) - order.indexOf(b); });
  }

  function emptyState(model) {
    return { selected: model.facets.map(function () { return new Set(); }), text: "", warnings: [] };
  }

  function parseState(model, search) {
    var params = new URLSearchParams(search);
    var state = emptyState(model);
    model.facets.forEach(function (facet) {
      var values = [];
      params.getAll(facet.name).forEach(function (raw) {
        // `?year=2024,2025` as `--year 2024,2025`: a comma list is OR, as in the CLI.
        raw.split(",").forEach(function (part) { if (part.trim()) values.push(part); });
      });
      values.forEach(function (raw) {
        var ids;
        try {
          ids = raw.trim() === "" ? [] : resolveValue(facet, raw);
        } catch (message) {
          state.warnings.push(message + " \u2014 ignored.");
          return;
        }
        ids.forEach(function (id) { state.selected[facet.k].add(id); });
      });
    });
    state.text = params.get(model.textKey) || "";
    return state;
  }

  function stateToSearch(model, state) {
    var params = new URLSearchParams();
    model.facets.forEach(function (facet) {
      sortedIds(facet, state.selected[facet.k]).forEach(function (id) { params.append(facet.name, id); });
    });
    if (state.text.trim()) params.set(model.textKey, state.text);
    var s = params.toString();
    return s ? "?" + s : "";
  }

  // Selected ids in the facet's own order; ids with no paper (e.g. a year not in the catalog) last.
  function sortedIds(facet, ids) {
    return Array.from(ids).sort(function (a, b) {
      var ia = facet.index.has(a) ? facet.index.get(a) : 1e9, ib = facet.index.has(b) ? facet.index.get(b) : 1e9;
      return ia !== ib ? ia - ib : a < b ? -1 : a > b ? 1 : 0;
    });
  }

  // --- filtering and counting ------------------------------------------------------------
  // The papers matching the state, newest first; {error} when the free text is malformed (the CLI exits 2).
  function filter(model, state) {
    var masks = model.facets.map(function (facet) {
      var sel = state.selected[facet.k];
      if (sel.size === 0) return null;
      var mask = new Uint8Array(facet.values.length);  // ids without a value index match nothing
      sel.forEach(function (id) { if (facet.index.has(id)) mask[facet.index.get(id)] = 1; });
      return mask;
    });
    var tree = null;
    if (state.text.trim()) {
      try {
        tree = model.parse(state.text.trim());
      } catch (err) {
        if (!(err instanceof QueryError)) throw err;
        return { results: [], error: err.message };
      }
    }
    var out = [];
    for (var n = 0; n < model.order.length; n++) {
      var p = model.papers[model.order[n]];
      if (passesFacets(p, masks) && (tree === null || matches(tree, p, model.textFields))) out.push(model.order[n]);
    }
    return { results: out, error: null };
  }

  function passesFacets(paper, masks) {
    for (var k = 0; k < masks.length; k++) {
      var mask = masks[k];
      if (!mask) continue;
      var tags = paper.tags[k], hit = false;
      for (var i = 0; i < tags.length; i++) if (mask[tags[i]]) { hit = true; break; }
      if (!hit) return false;
    }
    return true;
  }

  function countFacets(model, results) {
    var counts = model.facets.map(function (f) {
      return { values: new Int32Array(f.values.length), groups: new Int32Array(f.groups.length) };
    });
    var seenGroup = new Int32Array(8);
    for (var n = 0; n < results.length; n++) {
      var p = model.papers[results[n]];
      for (var k = 0; k < counts.length; k++) {
        var tags = p.tags[k], facet = model.facets[k];
        for (var i = 0; i < tags.length; i++) counts[k].values[tags[i]]++;
        if (facet.groups.length) {
          // A paper counts once per group, however many of the group's children it has.
          if (seenGroup.length < facet.groups.length) seenGroup = new Int32Array(facet.groups.length);
          for (var j = 0; j < tags.length; j++) {
            var g = facet.groupOf[tags[j]];
            if (g >= 0 && seenGroup[g] !== n + 1) { seenGroup[g] = n + 1; counts[k].groups[g]++; }
          }
          seenGroup.fill(0);
        }
      }
    }
    return counts;
  }

  // --- view --------------------------------------------------------------------------------
  function buildView(model, onToggle, onGroupToggle, onText, onClear) {
    var view = { boxes: [], groupBoxes: [], countEls: [], groupCountEls: [], rows: [], extra: [] };
    var sidebar = el("div", { className: "mi-explore__facets", "data-testid": "facets" });
    model.facets.forEach(function (facet) {
      var list = el("ul", { className: "mi-facet__list" });
      view.boxes[facet.k] = []; view.countEls[facet.k] = []; view.rows[facet.k] = [];
      view.groupBoxes[facet.k] = []; view.groupCountEls[facet.k] = [];
      var addValue = function (v, i, parentList, isChild) {
        var box = el("input", { type: "checkbox", "data-facet": facet.name, "data-value": v.id });
        box.addEventListener("change", function () { onToggle(facet, v.id, box.checked); });
        var count = el("span", { className: "mi-count", "data-testid": "facet-count",
                                 "data-facet": facet.name, "data-value": v.id });
        var row = el("li", { className: isChild ? "mi-facet__value mi-facet__child" : "mi-facet__value" }, [
          el("label", { title: v.description || null }, [box, el("span", { className: "mi-facet__label", text: v.label }), count]),
        ]);
        parentList.appendChild(row);
        view.boxes[facet.k][i] = box; view.countEls[facet.k][i] = count; view.rows[facet.k][i] = row;
      };
      facet.groups.forEach(function (g, gi) {
        var box = el("input", { type: "checkbox", "data-facet": facet.name, "data-value": g.id, "data-group": "true" });
        box.addEventListener("change", function () { onGroupToggle(facet, g, box.checked); });
        var count = el("span", { className: "mi-count", "data-testid": "facet-count",
                                 "data-facet": facet.name, "data-value": g.id });
        var sub = el("ul", { className: "mi-facet__list" });
        list.appendChild(el("li", { className: "mi-facet__group" }, [
          el("label", { title: g.description }, [box, el("strong", { className: "mi-facet__label", text: g.label }), count]),
          sub,
        ]));
        view.groupBoxes[facet.k][gi] = box; view.groupCountEls[facet.k][gi] = count;
        g.children.forEach(function (c) {
          if (facet.index.has(c)) addValue(facet.values[facet.index.get(c)], facet.index.get(c), sub, true);
        });
      });
      facet.values.forEach(function (v, i) { if (!view.boxes[facet.k][i]) addValue(v, i, list, false); });
      // Selected ids with no paper in the catalog (e.g. ?year=1999) get rows here, so they can be cleared.
      var extra = el("ul", { className: "mi-facet__list" });
      view.extra[facet.k] = extra;
      sidebar.appendChild(el("fieldset", { className: "mi-facet", "data-facet": facet.name }, [
        el("legend", { text: facet.label }), list, extra,
      ]));
    });

    var input = el("input", { type: "search", className: "mi-explore__search", "data-testid": "search-input",
                              placeholder: 'Search titles, summaries, authors: "a phrase", a OR b, NOT a, refus*, title:word', "aria-label": "Search text" });
    input.addEventListener("input", function () { onText(input.value); });
    var clear = el("button", { type: "button", className: "md-button mi-explore__clear", text: "Clear all",
                               "data-testid": "clear" });
    clear.addEventListener("click", onClear);
    var count = el("span", { "data-testid": "result-count", className: "mi-explore__count" });
    var countLine = el("p", { className: "mi-explore__summary" }, [count, el("span", { text: " matching papers" })]);
    var warnings = el("div", { className: "admonition warning mi-explore__warnings", "data-testid": "explore-warnings",
                               hidden: true });
    var results = el("ol", { className: "mi-explore__results", "data-testid": "results" });
    var more = el("button", { type: "button", className: "md-button", "data-testid": "show-more", hidden: true });
    var cli = el("p", { className: "mi-explore__cli" }, [el("code", { "data-testid": "cli-equivalent" })]);
    var main = el("div", { className: "mi-explore__main" }, [
      el("div", { className: "mi-explore__bar" }, [input, clear]), warnings, countLine, cli, results, more,
    ]);
    root.textContent = "";
    root.appendChild(el("div", { className: "mi-explore__layout" }, [sidebar, main]));
    view.input = input; view.count = count; view.warnings = warnings; view.results = results; view.more = more;
    view.cli = cli.firstChild;
    return view;
  }

  function renderFacets(model, view, state, counts) {
    model.facets.forEach(function (facet) {
      var sel = state.selected[facet.k];
      facet.values.forEach(function (v, i) {
        var n = counts[facet.k].values[i];
        view.boxes[facet.k][i].checked = sel.has(v.id);
        view.countEls[facet.k][i].textContent = String(n);
        view.rows[facet.k][i].classList.toggle("mi-zero", n === 0);
      });
      facet.groups.forEach(function (g, gi) {
        var chosen = g.children.filter(function (c) { return sel.has(c); }).length;
        var box = view.groupBoxes[facet.k][gi];
        box.checked = chosen === g.children.length && chosen > 0;
        box.indeterminate = chosen > 0 && chosen < g.children.length;
        view.groupCountEls[facet.k][gi].textContent = String(counts[facet.k].groups[gi]);
      });
      renderExtraValues(facet, view, sel);
    });
  }

  function renderExtraValues(facet, view, sel) {
    var extra = view.extra[facet.k];
    extra.textContent = "";
    sel.forEach(function (id) {
      if (facet.index.has(id)) return;
      var box = el("input", { type: "checkbox", checked: true, "data-facet": facet.name, "data-value": id });
      box.addEventListener("change", function () { view.onToggle(facet, id, box.checked); });
      extra.appendChild(el("li", { className: "mi-facet__value mi-zero" }, [
        el("label", null, [box, el("span", { className: "mi-facet__label", text: id }),
                           el("span", { className: "mi-count", "data-testid": "facet-count",
                                        "data-facet": facet.name, "data-value": id, text: "0" })]),
      ]));
    });
  }

  function renderResults(model, view, results, limit) {
    var base = root.getAttribute("data-papers") || "../papers/";
    var venue = model.byName.venue, objects = model.byName.object;
    var frag = document.createDocumentFragment();
    var shown = Math.min(limit, results.length);
    for (var n = 0; n < shown; n++) {
      var p = model.papers[results[n]];
      var venueLabel = p.tags[venue.k].map(function (i) { return venue.values[i].label; }).join(", ");
      var objectLabels = p.tags[objects.k].map(function (i) { return objects.values[i].label; }).join(", ");
      frag.appendChild(el("li", { className: "mi-result", "data-testid": "result", "data-id": p.id }, [
        el("a", { href: base + encodeURIComponent(p.id) + "/", text: p.title }),
        el("span", { className: "mi-result__meta", text: " \u2014 " + p.year + ", " + venueLabel +
                     (objectLabels ? " \u00b7 " + objectLabels : "") }),
      ]));
    }
    view.results.textContent = "";
    view.results.appendChild(frag);
    var rest = results.length - shown;
    view.more.hidden = rest <= 0;
    view.more.textContent = "Show " + Math.min(rest, PAGE_SIZE) + " more (" + rest + " not shown)";
  }

  function cliEquivalent(model, state) {
    var parts = ["mi-catalog query"];
    model.facets.forEach(function (facet) {
      cliValues(facet, state.selected[facet.k]).forEach(function (id) {
        parts.push("--" + facet.name + " " + shellQuote(id));
      });
    });
    if (state.text.trim()) parts.push(shellQuote(state.text.trim()));
    return parts.join(" ");
  }

  // The selected ids, with a fully selected group written as the group id (--application alignment).
  function cliValues(facet, selected) {
    var covered = new Set(), out = [];
    facet.groups.forEach(function (g) {
      if (g.children.every(function (c) { return selected.has(c); })) {
        out.push(g.id);
        g.children.forEach(function (c) { covered.add(c); });
      }
    });
    sortedIds(facet, selected).forEach(function (id) { if (!covered.has(id)) out.push(id); });
    return out;
  }

  function shellQuote(s) {
    return /^[A-Za-z0-9._\/-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'";
  }

  // --- controller --------------------------------------------------------------------------
  // The query string as loaded: overrides/main.html may have hidden ?q= from Material's search.
  var stashed = window.__miExploreSearch;
  var initialSearch = typeof stashed === "string" ? stashed : location.search;

  function restoreUrl() {
    if (typeof stashed !== "string") return;
    var put = function () { history.replaceState(null, "", location.pathname + stashed + location.hash); };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", put); else put();
  }

  function start(data) {
    var model = buildModel(data);
    var state = parseState(model, initialSearch);
    var limit = PAGE_SIZE;
    var results = [];
    var typing = false;  // a run of keystrokes makes one history entry, not one per key

    function update(push) {
      var t0 = performance.now();
      var found = filter(model, state);
      results = found.results;
      renderFacets(model, view, state, countFacets(model, results));
      view.count.textContent = String(results.length);
      renderResults(model, view, results, limit);
      view.cli.textContent = cliEquivalent(model, state);
      var warnings = found.error ? state.warnings.concat([found.error]) : state.warnings;
      view.warnings.hidden = warnings.length === 0;
      view.warnings.textContent = warnings.join(" ");
      if (push === "push") history.pushState(null, "", location.pathname + stateToSearch(model, state));
      else if (push === "replace") history.replaceState(null, "", location.pathname + stateToSearch(model, state));
      root.setAttribute("data-update-ms", (performance.now() - t0).toFixed(2));
    }

    function changed() {
      typing = false;
      limit = PAGE_SIZE;
      state.warnings = [];  // the URL is about to be rewritten without the ignored values
      update("push");
    }

    function toggle(facet, id, on) {
      if (on) state.selected[facet.k].add(id); else state.selected[facet.k].delete(id);
      changed();
    }

    function toggleGroup(facet, group, on) {
      group.children.forEach(function (c) {
        if (on) state.selected[facet.k].add(c); else state.selected[facet.k].delete(c);
      });
      changed();
    }

    function typed(value) {
      state.text = value;
      limit = PAGE_SIZE;
      state.warnings = [];
      update(typing ? "replace" : "push");
      typing = true;
    }

    function clearAll() {
      state = emptyState(model);
      view.input.value = "";
      changed();
    }

    var view = buildView(model, toggle, toggleGroup, typed, clearAll);
    view.onToggle = toggle;
    view.more.addEventListener("click", function () {
      limit += PAGE_SIZE;
      renderResults(model, view, results, limit);
    });
    window.addEventListener("popstate", function () {
      state = parseState(model, location.search);
      view.input.value = state.text;
      typing = false;
      limit = PAGE_SIZE;
      update(null);
    });
    view.input.value = state.text;
    update(null);
    restoreUrl();
    root.setAttribute("data-ready", "true");
  }

  function fail(message) {
    root.textContent = "";
    root.appendChild(el("p", { className: "admonition failure", "data-testid": "explore-error", text: message }));
    root.setAttribute("data-ready", "error");
  }

  fetch(root.getAttribute("data-src"))
    .then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    })
    .then(start)
    .catch(function (err) {
      console.error(err);
      fail("Could not load the catalog data (" + err.message + ").");
    });
})();
