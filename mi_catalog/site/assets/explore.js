/* The explore page: facet filters, free text and live counts over assets/explore-data.json.
 *
 * Semantics mirror `mi-catalog query`: OR within a facet, AND across facets;
 * values are resolved through the vocabulary's alias maps (exported by
 * mi_catalog/site/explore_data.py, never re-typed here); free text keeps a
 * paper when every query token is one of its analyzed tokens. State lives in
 * the query string under the CLI's flag names, so every view is a URL.
 *
 * Catalog text only ever reaches the DOM through textContent / attributes.
 * Loaded on every page by mkdocs (extra_javascript); does nothing elsewhere.
 */
(function () {
  "use strict";

  var root = document.getElementById("mi-explore");
  if (!root) return;

  var PAGE_SIZE = 100;
  var TEXT_KEY = "q";

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
      var out = [];
      var found = query.match(pattern) || [];
      found.forEach(function (raw) {
        var token = raw.toLowerCase();
        if (token.length >= text.minLength && !stops.has(token) && out.indexOf(token) < 0) out.push(token);
      });
      return out;
    };
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
      return { k: k, name: f.name, label: f.label, values: f.values, groups: f.groups, aliases: f.aliases,
               match: f.match, index: index, groupOf: groupOf };
    });
    var papers = data.papers.map(function (p) {
      return { id: p[0], title: p[1], year: p[2], tags: p[3], tokens: new Set(p[4] ? p[4].split(" ") : []) };
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
    return { facets: facets, byName: byName, papers: papers, order: order, tokenize: compileTokenizer(data.text) };
  }

  // Resolve one URL value to canonical ids, as the CLI does; null when unknown.
  function resolveValue(facet, raw) {
    if (facet.match === "exact") {
      return /^\s*\d+\s*$/.test(raw) ? [String(parseInt(raw, 10))] : null;
    }
    var id = Object.prototype.hasOwnProperty.call(facet.aliases, normalizeKey(raw)) ?
      facet.aliases[normalizeKey(raw)] : undefined;
    if (id === undefined) return null;
    for (var i = 0; i < facet.groups.length; i++) {
      if (facet.groups[i].id === id) return facet.groups[i].children.slice();
    }
    return [id];
  }

  function emptyState(model) {
    return { selected: model.facets.map(function () { return new Set(); }), text: "", warnings: [] };
  }

  function parseState(model, search) {
    var params = new URLSearchParams(search);
    var state = emptyState(model);
    model.facets.forEach(function (facet) {
      params.getAll(facet.name).forEach(function (raw) {
        var ids = raw.trim() === "" ? [] : resolveValue(facet, raw);
        if (ids === null) {
          state.warnings.push("Unknown " + facet.name + " \u201c" + raw + "\u201d \u2014 ignored.");
          return;
        }
        ids.forEach(function (id) { state.selected[facet.k].add(id); });
      });
    });
    state.text = params.get(TEXT_KEY) || "";
    return state;
  }

  function stateToSearch(model, state) {
    var params = new URLSearchParams();
    model.facets.forEach(function (facet) {
      sortedIds(facet, state.selected[facet.k]).forEach(function (id) { params.append(facet.name, id); });
    });
    if (state.text.trim()) params.set(TEXT_KEY, state.text);
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
  function filter(model, state) {
    var masks = model.facets.map(function (facet) {
      var sel = state.selected[facet.k];
      if (sel.size === 0) return null;
      var mask = new Uint8Array(facet.values.length);  // ids without a value index match nothing
      sel.forEach(function (id) { if (facet.index.has(id)) mask[facet.index.get(id)] = 1; });
      return mask;
    });
    var tokens = model.tokenize(state.text);
    var out = [];
    for (var n = 0; n < model.order.length; n++) {
      var p = model.papers[model.order[n]];
      if (passesFacets(p, masks) && hasTokens(p, tokens)) out.push(model.order[n]);
    }
    return out;
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

  function hasTokens(paper, tokens) {
    for (var i = 0; i < tokens.length; i++) if (!paper.tokens.has(tokens[i])) return false;
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
                              placeholder: "Search titles, summaries and authors", "aria-label": "Search text" });
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
      results = filter(model, state);
      renderFacets(model, view, state, countFacets(model, results));
      view.count.textContent = String(results.length);
      renderResults(model, view, results, limit);
      view.cli.textContent = cliEquivalent(model, state);
      view.warnings.hidden = state.warnings.length === 0;
      view.warnings.textContent = state.warnings.join(" ");
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
