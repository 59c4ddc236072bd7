"""The report's page: one self-contained HTML file (styles and the little script it needs inline, figures as
inline SVG, thumbnails as data: URIs), so it opens from disk with no network."""

from __future__ import annotations

from html import escape

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fff}
header{background:#1f2a44;color:#fff;padding:14px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;opacity:.85}nav{display:flex;gap:14px;padding:8px 28px;background:#eef1f6;
position:sticky;top:0;z-index:2}nav a{color:#1f2a44;text-decoration:none;font-weight:600}
main{padding:0 28px 40px;max-width:1300px}section{border-bottom:1px solid #e3e6eb;padding:10px 0 18px}
h2{font-size:18px;margin:14px 0 8px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0;font-size:13px}th,td{border-bottom:1px solid #e3e6eb;
padding:3px 9px;text-align:left}th{background:#f5f6f8}table.sortable th{cursor:pointer;user-select:none}
table.sortable th:after{content:" \\2195";color:#aaa}tr.baseline{background:#fff8e6}tr.diverged td{color:#b3261e}
.tag{font-size:11px;background:#efb118;color:#000;border-radius:3px;padding:0 4px}.tag.warn{background:#ff725c}
.row{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}.good{color:#1b7f3b}.bad{color:#b3261e}
svg{max-width:100%;height:auto}svg.map.off{display:none}.mapbox{position:relative;display:inline-block}
.scroll{overflow-x:auto}td{white-space:nowrap}
svg.map circle{stroke:#fff;stroke-width:.8;cursor:pointer}svg.map circle:hover{stroke:#000;stroke-width:2}
#tip{position:absolute;pointer-events:none;background:#fff;border:1px solid #ccc;padding:4px;
box-shadow:0 2px 6px rgba(0,0,0,.2);font-size:12px;max-width:180px}#tip img{display:block;width:160px}
.buttons button{margin-right:6px;padding:3px 10px;border:1px solid #aab;background:#fff;border-radius:4px;cursor:pointer}
.buttons button.on{background:#1f2a44;color:#fff}.legend{margin:6px 0}.key{margin-right:12px;white-space:nowrap}
.key i{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:4px}
.cards,.nnrow{display:flex;flex-wrap:wrap;gap:10px;align-items:center}figure{margin:0;width:150px;font-size:12px}
figure img{width:150px;display:block;border-radius:3px}figure.wrong img{outline:3px solid #ff725c}
.noimg{width:150px;height:84px;background:#eee;display:flex;align-items:center;justify-content:center;color:#777}
.nnrow{margin:10px 0}.arrow{color:#666}pre{background:#f5f6f8;padding:8px;overflow:auto;max-height:420px}
"""

SCRIPT = """
(function(){
  document.querySelectorAll('table.sortable').forEach(function(t){
    t.querySelectorAll('th').forEach(function(th,col){
      th.addEventListener('click',function(){
        var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows),up=th.dataset.dir!=='up';
        th.dataset.dir=up?'up':'down';
        rows.sort(function(a,b){
          var x=a.cells[col],y=b.cells[col],u=x.dataset.v,v=y.dataset.v;
          if(u!==undefined&&v!==undefined&&u!==''&&v!==''){return up?u-v:v-u;}
          return up?x.textContent.localeCompare(y.textContent):y.textContent.localeCompare(x.textContent);
        });
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  var data=document.getElementById('points');
  if(!data){return;}
  var points=JSON.parse(data.textContent),tip=document.getElementById('tip');
  document.querySelectorAll('svg.map').forEach(function(svg){
    svg.addEventListener('mouseover',function(e){
      var i=e.target.getAttribute('data-i');if(i===null){return;}
      var p=points[+i];tip.textContent='';
      if(p.thumb){var img=document.createElement('img');img.src=p.thumb;img.alt=p.id;tip.appendChild(img);}
      var s=document.createElement('div');s.textContent=p.id+(p.label?' \\u00b7 '+p.label:'')+' ('+p.split+')';
      tip.appendChild(s);tip.hidden=false;
    });
    svg.addEventListener('mousemove',function(e){
      var r=svg.parentNode.getBoundingClientRect();
      tip.style.left=(e.clientX-r.left+14)+'px';tip.style.top=(e.clientY-r.top+14)+'px';
    });
    svg.addEventListener('mouseleave',function(){tip.hidden=true;});
  });
  document.querySelectorAll('.buttons button').forEach(function(b){
    b.addEventListener('click',function(){
      document.querySelectorAll('.buttons button').forEach(function(x){x.classList.toggle('on',x===b);});
      document.querySelectorAll('svg.map').forEach(function(s){s.classList.toggle('off',s.dataset.map!==b.dataset.show);});
    });
  });
})();
"""

NAV = (
    ("data", "Data"),
    ("leaderboard", "Leaderboard"),
    ("best", "Best run"),
    ("map", "Map"),
    ("gallery", "Gallery"),
    ("provenance", "Provenance"),
)


def render(title: str, subtitle: str, sections: list[str]) -> str:
    nav = "".join(f"<a href='#{a}'>{t}</a>" for a, t in NAV)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header><nav>{nav}</nav>"
        f"<main>{''.join(sections)}</main><script>{SCRIPT}</script></body></html>\n"
    )
