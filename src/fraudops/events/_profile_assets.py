"""The profile page's inline style sheet and script (no file, font or image is ever loaded).

Colours are CSS variables with a dark variant, so the SVG charts (which use classes, not
colours) follow the reader's theme. The script only sorts tables when a header is clicked.
"""

CSS = """
:root{--bg:#f6f7f9;--fg:#1c2230;--muted:#5d6877;--card:#fff;--line:#e2e5ea;--ev:#a9c1e0;
--lab:#3d6cad;--fr:#d9534f;--neg:#3d6cad;--rate:#8a1c16;--accent:#2f62a8;--warn:#9a5b00;
--warnbg:#fff1d6;--badge:#eef1f5}
@media (prefers-color-scheme:dark){:root{--bg:#13161b;--fg:#e3e6eb;--muted:#98a2b0;
--card:#1c2027;--line:#2d333c;--ev:#48678f;--lab:#92b5ea;--fr:#ff6f6a;--neg:#92b5ea;
--rate:#ffb1ab;--accent:#92b5ea;--warn:#ffbe5c;--warnbg:#3b2d12;--badge:#2a3039}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:var(--bg);color:var(--fg)}
header{padding:24px 32px 4px;max-width:1240px}
h1{margin:0 0 4px;font-size:24px;font-weight:650}
h2{font-size:18px;margin:0 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:14px 0 6px}h4{font-size:13px;margin:14px 0 4px;color:var(--muted)}
.sub,.muted{color:var(--muted)}.sub{margin:0}code{font-size:12px}
nav{position:sticky;top:0;z-index:2;display:flex;flex-wrap:wrap;gap:4px 18px;padding:8px 32px;
background:var(--bg);border-bottom:1px solid var(--line)}
nav a,article a,td a{color:var(--accent);text-decoration:none}
nav a:hover,td a:hover{text-decoration:underline}
main{padding:0 32px 40px;max-width:1240px}section{margin-top:30px}
section,article{scroll-margin-top:48px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px;
margin:18px 0 8px}
.card,.box,article.col{background:var(--card);border:1px solid var(--line);border-radius:8px}
.card{padding:10px 14px}.box{padding:14px 18px}.box ul{margin:0;padding-left:18px}
.card .k{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.card .v{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;background:var(--card);font-variant-numeric:tabular-nums;
border:1px solid var(--line);border-radius:8px}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}
th{font-size:12px;font-weight:600;color:var(--muted);white-space:nowrap}
.n{text-align:right}td.barcell{width:22%}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:hover{color:var(--fg)}
th[data-dir=asc]::after{content:" ▲"}th[data-dir=desc]::after{content:" ▼"}
tbody tr:hover{background:var(--bg)}
.bar{height:9px;border-radius:2px;background:var(--ev);min-width:1px}.bar.fr{background:var(--fr)}
.bar.neg{background:var(--neg)}.bar.mini{height:3px;margin-top:2px;margin-left:auto;max-width:100%}
.rbar,.signed{position:relative;height:9px}
.rbar .mark{position:absolute;top:-3px;width:2px;height:15px;background:var(--fg);opacity:.6}
.signed .bar{position:absolute;top:0}
.signed::before{content:"";position:absolute;left:50%;top:-3px;height:15px;
border-left:1px solid var(--muted)}
.flag{display:inline-block;margin:1px 3px 1px 0;padding:0 7px;border-radius:9px;font-size:11px;
font-weight:500;background:var(--warnbg);color:var(--warn)}
.badge{display:inline-block;margin-left:4px;padding:0 7px;border-radius:9px;font-size:11px;
font-weight:500;background:var(--badge);color:var(--muted)}
article.col{padding:12px 18px 16px;margin:14px 0}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:6px 18px;
margin:8px 0 12px}
.stats div{display:flex;flex-direction:column}.stats dt{font-size:12px;color:var(--muted)}
.stats dd{margin:0;font-weight:600;font-variant-numeric:tabular-nums}
.pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:0 24px}
details{margin-top:8px}summary{cursor:pointer;color:var(--accent)}
svg.chart{display:block;width:100%;max-width:960px;height:auto;margin:6px 0}
svg.hist{max-width:760px}svg.heat{width:auto}
.chart .grid{stroke:var(--line)}.chart .tick{fill:var(--muted);font-size:11px}
.chart .end{text-anchor:end}.chart .mid{text-anchor:middle}
.chart .panel{fill:var(--fg);font-size:12px;font-weight:600}
.chart .ev{fill:var(--ev)}.chart .lab{fill:var(--lab)}.chart .fr{fill:var(--fr)}
.chart .rate{fill:none;stroke:var(--rate);stroke-width:1.6}.chart .dot{fill:var(--rate)}
.chart g:hover rect{opacity:.7}
.chart .cell{font-size:10px;text-anchor:middle;fill:#1c2230}.chart .cell.light{fill:#fff}
footer{padding:20px 32px;color:var(--muted);font-size:12px}
"""

SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var dir = th.dataset.dir === "desc" ? "asc" : "desc";
    table.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = dir;
    function key(row) {
      var cell = row.cells[col];
      return cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
    }
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y), r;
      if (isNaN(nx) && isNaN(ny)) { r = x.localeCompare(y); }
      else if (isNaN(nx)) { return 1; }
      else if (isNaN(ny)) { return -1; }
      else { r = nx - ny; }
      return dir === "asc" ? r : -r;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
"""
