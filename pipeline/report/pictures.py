"""The report's pictures of the features: the 2-D map (every sample a point, its clip on hover) and the gallery
of the best head's worst mistakes beside their nearest training clips."""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape

import numpy as np
import pandas as pd
from vidprobe.report import figures
from vidprobe.report.gather import Projection, Source, neighbours
from vidprobe.report.sections import section

MAP_SIZE = 600  # px, the map's square


def colour_of(rows: pd.DataFrame, cfg) -> tuple[list[str], str, list[tuple[str, str]]]:
    """Each point's colour, what colours mean, and the legend."""
    if cfg.task.label and cfg.task.label in rows:
        labels = rows[cfg.task.label].astype(str).tolist()
        order = sorted(set(labels))
        palette = {c: figures.PALETTE[i % len(figures.PALETTE)] for i, c in enumerate(order)}
        return [palette[c] for c in labels], f"class ({cfg.task.label})", list(palette.items())[:30]
    trait = next((t for t in cfg.task.traits if t in rows), None)
    if trait is None:
        return ["#4269d0"] * len(rows), "", []
    import matplotlib

    v = rows[trait].to_numpy(float)
    lo, hi = np.nanmin(v), np.nanmax(v)
    cmap = matplotlib.colormaps["viridis"]
    colours = [matplotlib.colors.to_hex(cmap((x - lo) / (hi - lo + 1e-12))) if not np.isnan(x) else "#bbb" for x in v]
    return (
        colours,
        f"{trait} (low: purple, high: yellow)",
        [(f"{lo:.3g}", colours[int(np.nanargmin(v))]), (f"{hi:.3g}", colours[int(np.nanargmax(v))])],
    )


def map_svg(name: str, p: Projection, colours: list[str], hidden: bool) -> str:
    """One projection as an SVG square: a circle per point (data-i: its row in the points list), axis names."""
    pad, size = 14, MAP_SIZE
    lo, hi = p.xy.min(0), p.xy.max(0)
    pos = (p.xy - lo) / np.where(hi - lo > 0, hi - lo, 1) * (size - 2 * pad) + pad
    dots = "".join(
        f"<circle cx='{x:.1f}' cy='{size - y:.1f}' r='4.5' fill='{c}' data-i='{i}'/>"
        for i, ((x, y), c) in enumerate(zip(pos, colours))
    )
    axes = (
        f"<text x='{size / 2}' y='{size + 16}' text-anchor='middle'>{escape(p.axes[0])}</text>"
        f"<text transform='translate(-6 {size / 2}) rotate(-90)' text-anchor='middle'>{escape(p.axes[1])}</text>"
    )
    return (
        f"<svg class='map{' off' if hidden else ''}' data-map='{escape(name)}' viewBox='-20 0 {size + 20} {size + 22}' "
        f"width='{size + 20}' height='{size + 22}'><rect width='{size}' height='{size}' fill='#fafafa'/>"
        f"{dots}{axes}</svg>"
    )


def feature_map(
    src: Source, rows: pd.DataFrame, maps: dict[str, Projection], thumbs: dict[str, str], total: int
) -> str:
    """`rows`: the samples drawn (all of them up to the report's cap); `total`: how many have features."""
    colours, meaning, legend = colour_of(rows, src.cfg)
    label = src.cfg.task.label
    svgs = [map_svg(name, p, colours, n > 0) for n, (name, p) in enumerate(maps.items())]
    points = [
        {"id": i, "label": "" if not label else str(r.get(label, "")), "split": r["split"], "thumb": thumbs.get(i, "")}
        for i, r in zip(rows.index, rows.to_dict("records"))
    ]
    payload = json.dumps(points).replace("</", "<\\/")  # no "</script>" inside the script
    buttons = "".join(
        f"<button data-show='{escape(n)}'{' class=on' if k == 0 else ''}>{escape(n)}</button>"
        for k, n in enumerate(maps)
    )
    keys = "".join(f"<span class='key'><i style='background:{c}'></i>{escape(t)}</span>" for t, c in legend)
    drawn = (
        f"{len(rows)} samples (every split)"
        if len(rows) == total
        else f"{len(rows)} of {total} samples, drawn at random"
    )
    notes = [p.note for p in maps.values() if p.note]
    body = (
        f"<p>{drawn}, the head's input features standardised, coloured by {escape(meaning)}. Hover a point for its "
        f"clip.</p>{''.join(f'<p>{escape(n)}</p>' for n in notes)}<div class='buttons'>{buttons}</div>"
        f"<div class='legend'>{keys}</div><div class='mapbox'>{''.join(svgs)}<div id='tip' hidden></div></div>"
        f"<script type='application/json' id='points'>{payload}</script>"
    )
    return section("map", "Map of the features", body)


@dataclass
class Gallery:
    what: str  # which clips these are
    captions: dict[str, str]  # sample_id -> true and predicted, for each clip shown (worst first)
    near: dict[str, list[str]]  # sample_id -> its nearest training clips, for the first few shown

    def ids(self) -> list[str]:
        return list(self.captions) + [n for nn in self.near.values() for n in nn]


def pick_gallery(
    src: Source, rows: pd.DataFrame, x: np.ndarray, shown: int = 8, with_near: int = 4, k: int = 5
) -> Gallery:
    """The clips of `src.split` the best head gets wrong with the most confidence (classes) or misses by most
    (traits: summed standardised error), and the nearest training clips of the first `with_near` of them."""
    p, cfg = src.predictions, src.cfg
    if cfg.task.label and "pred" in p:
        wrong = p[p["label"] != p["pred"]].sort_values("confidence", ascending=False, kind="stable").head(shown)
        what = "the clips the best head gets wrong with the most confidence"
        captions = {
            r.sample_id: f"true {r.label} · predicted {r.pred} ({r.confidence:.2f})" for r in wrong.itertuples()
        }
    else:
        traits = [t for t in cfg.task.traits if f"pred/{t}" in p]
        err = sum(((p[t] - p[f"pred/{t}"]) / (p[t].std() + 1e-9)).abs() for t in traits) if traits else 0.0
        wrong = p.assign(err=err).sort_values("err", ascending=False, kind="stable").head(shown)
        what = "the clips whose traits the best head misses by most (summed standardised error)"
        captions = {
            r["sample_id"]: " · ".join(f"{t} {r[t]:.3g} → {r[f'pred/{t}']:.3g}" for t in traits)
            for r in wrong.to_dict("records")
        }
    index = {s: n for n, s in enumerate(rows.index)}
    train = np.flatnonzero((rows.split == "train").to_numpy())
    queries = [s for s in captions if s in index][:with_near]
    found = neighbours(x, np.array([index[s] for s in queries], dtype=int), train, k) if len(train) and queries else []
    return Gallery(what, captions, {s: [str(rows.index[j]) for j in nn] for s, nn in zip(queries, found)})


def gallery(src: Source, g: Gallery, rows: pd.DataFrame, thumbs: dict[str, str]) -> str:
    if not g.captions:
        return section("gallery", "Gallery", f"<p class='good'>No mistakes on the {src.split} split.</p>")
    label = src.cfg.task.label

    def card(sample_id: str, text: str, cls: str) -> str:
        img = (
            f"<img src='{thumbs[sample_id]}' alt='{escape(sample_id)}'>"
            if sample_id in thumbs
            else "<div class='noimg'>no frame</div>"
        )
        return (
            f"<figure class='{cls}'>{img}<figcaption><b>{escape(sample_id)}</b><br>{escape(text)}</figcaption></figure>"
        )

    def truth(sample_id: str) -> str:
        if label:
            return f"{label}: {rows.at[sample_id, label]}"
        return " · ".join(f"{t} {rows.at[sample_id, t]:.3g}" for t in src.cfg.task.traits if t in rows)

    cards = "".join(card(s, text, "wrong") for s, text in g.captions.items())
    lines = [
        f"<div class='nnrow'>{card(s, g.captions[s], 'wrong')}<span class='arrow'>nearest in train →</span>"
        + "".join(card(n, truth(n), "neighbour") for n in nn)
        + "</div>"
        for s, nn in g.near.items()
    ]
    body = (
        f"<p>On the {src.split} split, {g.what}.</p><div class='cards'>{cards}</div>"
        f"<h3>Their nearest training clips (cosine, in feature space)</h3>{''.join(lines)}"
    )
    return section("gallery", "Gallery", body)
