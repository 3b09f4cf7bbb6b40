"""Tracking, fission and fusion: simulated truth, real marked divisions, and speed.

Three parts (issue #10, item 5):

``simulated``
    :func:`napari_organelle.simulation.dynamics.simulate_dynamics` movies
    (100 nm pixels) with their ids shuffled per frame, under four conditions:
    ``clean`` labels; ``dropout`` (3 % of objects missing from single frames:
    gap closing); ``outlines`` (dropout, and each outline moves in or out by a
    pixel in half the frames); ``cuts`` (outlines, and 1 % of long objects cut
    in two for one frame: false fission/fusion pairs the tracker must undo).
    Link accuracy (share of true links made) and precision; fission and fusion
    precision, recall and F1 with events matched within 2 frames and 1 um.
``real``
    ../shared/data/fluo-mito-fission-isim: 9 iSIM movies (56 nm, 4-11 frames)
    with hand-marked division sites. Each movie is segmented with the bundled
    ``fluo-organelles`` model (``classes=["mitochondria"]``) and tracked. The
    marks of one site (one per frame while it is visible) are grouped into a
    site; a site counts as detected when a fission lies within 1 um (18 px) of
    any of its marks and within 2 frames of the span it is marked in. Events
    with an object under 50 px (0.16 um^2) are dropped as fragments. Every
    detected event (fission or fusion) with no marked site within that
    tolerance is a *false event* (an upper bound: unmarked real events count
    too). Recall at 0.5 and 2 um is also given.
``timing``
    seconds to track a 512 x 512 x 100-frame simulated label movie (after
    segmentation), at two densities.

With ``--laptrack`` (and laptrack installed) laptrack's ``OverLapTrack`` is run
on the ``cuts`` movies of the first part at a reduced size, for comparison.

Usage::

    nice python benchmarks/dynamics.py                  # all parts
    nice python benchmarks/dynamics.py --parts simulated timing --movies 2
    nice python benchmarks/dynamics.py --parts figure     # docs/images/dynamics.png

Writes benchmarks/results/dynamics.json and prints tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_organelle.durable import atomic_write_json
from napari_organelle.simulation.dynamics import perturb_labels, shuffle_labels, simulate_dynamics
from napari_organelle.tracking import Event, track
from napari_organelle.tracking.scoring import event_scores, link_scores

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "dynamics.json"
DATA = HERE.parent.parent / "shared" / "data" / "fluo-mito-fission-isim"
SIM_PIXEL_NM = 100.0
TOL_FRAMES, TOL_UM = 2, 1.0
#: real movies: events with an object under 50 px (0.16 um^2 at 56 nm, about a
#: diffraction-limited spot) are segmentation fragments, not organelles dividing
REAL_MIN_EVENT_AREA_PX = 50

CONDITIONS = {
    "clean": {"dropout": 0.0, "boundary": 0.0, "cuts": 0.0},
    "dropout": {"dropout": 0.03, "boundary": 0.0, "cuts": 0.0},
    "outlines": {"dropout": 0.03, "boundary": 0.5, "cuts": 0.0},
    "cuts": {"dropout": 0.03, "boundary": 0.5, "cuts": 0.01},
}


def simulated_movie(condition: str, seed: int, size: int, frames: int):
    """A simulated movie, its tracker input (shuffled, perturbed) and its truth."""
    settings = CONDITIONS[condition]
    movie = simulate_dynamics((size, size), frames, seed=seed, dropout=settings["dropout"],
                              pixel_size_nm=SIM_PIXEL_NM)
    labels = shuffle_labels(movie.labels, seed)
    if settings["boundary"] or settings["cuts"]:
        labels = perturb_labels(labels, seed, boundary=settings["boundary"],
                                cuts=settings["cuts"])
    return movie, labels


def run_simulated(n_movies: int, size: int, frames: int) -> dict[str, Any]:
    tolerance_px = TOL_UM * 1000 / SIM_PIXEL_NM
    out: dict[str, Any] = {"size": size, "frames": frames, "movies": n_movies,
                           "pixel_nm": SIM_PIXEL_NM, "tolerance_frames": TOL_FRAMES,
                           "tolerance_um": TOL_UM, "conditions": {}}
    for condition in CONDITIONS:
        totals = {"true_links": 0, "correct_links": 0, "found_links": 0}
        counts = {k: {"true": 0, "found": 0, "matched": 0} for k in ("fission", "fusion")}
        seconds = 0.0
        for seed in range(n_movies):
            movie, labels = simulated_movie(condition, seed, size, frames)
            started = time.perf_counter()
            result = track(labels)
            seconds += time.perf_counter() - started
            links = link_scores(result, labels, movie.labels, movie.tracks)
            for key in totals:
                totals[key] += links[key]
            scores = event_scores(result.events, movie.events, TOL_FRAMES, tolerance_px)
            for kind in counts:
                for key in counts[kind]:
                    counts[kind][key] += scores[kind][key]
        entry: dict[str, Any] = {
            "link_accuracy": totals["correct_links"] / totals["true_links"],
            "link_precision": totals["correct_links"] / max(totals["found_links"], 1),
            "true_links": totals["true_links"], "seconds_tracking": round(seconds, 3)}
        for kind, c in counts.items():
            precision = c["matched"] / c["found"] if c["found"] else 1.0
            recall = c["matched"] / c["true"] if c["true"] else 1.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            entry[kind] = {**c, "precision": precision, "recall": recall, "f1": f1}
        out["conditions"][condition] = entry
    return out


def division_sites(table: pd.DataFrame, join_px: float = 15.0) -> list[dict[str, Any]]:
    """Group per-frame marks of one movie into sites (marks within ``join_px`` in next frames)."""
    sites: list[dict[str, Any]] = []
    for row in table.sort_values("t").itertuples():
        point = np.array([row.y, row.x], float)
        for site in sites:
            last_t, last_point = site["marks"][-1]
            if 0 < row.t - last_t <= 2 and np.linalg.norm(point - last_point) <= join_px:
                site["marks"].append((row.t, point))
                break
        else:
            sites.append({"marks": [(row.t, point)]})
    return sites


def _near(event: Event, site: dict[str, Any], max_px: float, max_frames: int) -> bool:
    times = [t for t, _ in site["marks"]]
    if not min(times) - max_frames <= event.t <= max(times) + max_frames:
        return False
    return min(np.linalg.norm(np.subtract(event.position, p)) for _, p in site["marks"]) <= max_px


def site_state(labels: np.ndarray, site: dict[str, Any], half: int = 9) -> str:
    """What the segmentation shows at a site: ``whole then split``, ``split from the
    start``, ``whole throughout`` or ``no object`` (objects in a 19 x 19 px window
    at the first marked frame and at the last frame of the movie)."""
    def pieces(t: int, point: np.ndarray) -> int:
        y, x = (int(round(v)) for v in point)
        window = labels[t, max(y - half, 0):y + half + 1, max(x - half, 0):x + half + 1]
        return len(set(np.unique(window).tolist()) - {0})

    t0, p0 = site["marks"][0]
    first, last = pieces(int(t0), p0), pieces(len(labels) - 1, site["marks"][-1][1])
    if first == 0 and last == 0:
        return "no object"
    if first >= 2:
        return "split from the start"
    return "whole then split" if last >= 2 else "whole throughout"


def run_real(tolerances_um: tuple[float, ...] = (0.5, 1.0, 2.0)) -> dict[str, Any]:
    from napari_organelle.models import load_model
    from napari_organelle.tracking.images import segment_movie

    if not (DATA / "division_sites.csv").is_file():
        return {"skipped": f"{DATA} not found"}
    import tifffile

    pixel_nm = 56.0
    marks = pd.read_csv(DATA / "division_sites.csv")
    model = load_model("fluo-organelles")
    movies = []
    for path in sorted((DATA / "movies").glob("*.tif")):
        images = tifffile.imread(path)
        started = time.perf_counter()
        labels = segment_movie(images, model, "mitochondria", pixel_size_nm=pixel_nm)
        segmented = time.perf_counter() - started
        started = time.perf_counter()
        result = track(labels, scale=pixel_nm / 1000, min_event_area=REAL_MIN_EVENT_AREA_PX)
        tracked = time.perf_counter() - started
        sites = division_sites(marks[marks["movie"] == path.stem])
        entry: dict[str, Any] = {
            "movie": path.stem, "frames": int(images.shape[0]), "sites": len(sites),
            "segmentation_at_sites": [site_state(labels, s) for s in sites],
            "objects_per_frame": round(len(result.detections) / images.shape[0], 1),
            "fissions": sum(e.kind == "fission" for e in result.events),
            "fusions": sum(e.kind == "fusion" for e in result.events),
            "seconds_segmentation": round(segmented, 2), "seconds_tracking": round(tracked, 3)}
        for um in tolerances_um:
            px = um * 1000 / pixel_nm
            fissions = [e for e in result.events if e.kind == "fission"]
            found = sum(any(_near(e, s, px, TOL_FRAMES) for e in fissions) for s in sites)
            false = sum(not any(_near(e, s, px, TOL_FRAMES) for s in sites)
                        for e in result.events)
            entry[f"detected@{um:g}um"] = found
            entry[f"false_events@{um:g}um"] = false
        movies.append(entry)
    total_sites = sum(m["sites"] for m in movies)
    summary = {f"recall@{um:g}um": sum(m[f"detected@{um:g}um"] for m in movies) / total_sites
               for um in tolerances_um}
    summary |= {f"false_events_per_movie@{um:g}um":
                float(np.mean([m[f"false_events@{um:g}um"] for m in movies]))
                for um in tolerances_um}
    states = [state for m in movies for state in m["segmentation_at_sites"]]
    summary["sites_by_segmentation"] = {state: states.count(state) for state in sorted(set(states))}
    return {"pixel_nm": pixel_nm, "model": "fluo-organelles", "tolerance_frames": TOL_FRAMES,
            "min_event_area_px": REAL_MIN_EVENT_AREA_PX,
            "sites": total_sites, "summary": summary, "movies": movies}


def run_timing(size: int = 512, frames: int = 100) -> dict[str, Any]:
    out = {}
    for slot in (40, 32):
        movie = simulate_dynamics((size, size), frames, slot=slot, seed=0, dropout=0.02)
        labels = shuffle_labels(movie.labels, 0)
        started = time.perf_counter()
        result = track(labels)
        seconds = time.perf_counter() - started
        out[f"slot{slot}"] = {"shape": [frames, size, size], "seconds": round(seconds, 2),
                              "objects_per_frame": round(len(result.detections) / frames, 1),
                              "tracks": len(result.track_table), "events": len(result.events)}
    return out


def run_laptrack(size: int, frames: int, n_movies: int) -> dict[str, Any]:
    """laptrack's OverLapTrack on the ``cuts`` movies, scored like ours."""
    try:
        from laptrack import OverLapTrack
    except ImportError:
        return {"skipped": "laptrack is not installed"}
    from napari_organelle.tracking.core import TrackingResult

    tolerance_px = TOL_UM * 1000 / SIM_PIXEL_NM
    rows = []
    for seed in range(n_movies):
        movie, labels = simulated_movie("cuts", seed, size, frames)
        ours_started = time.perf_counter()
        ours = track(labels)
        ours_seconds = time.perf_counter() - ours_started
        started = time.perf_counter()
        tracker = OverLapTrack(cutoff=0.9, splitting_cutoff=0.9, merging_cutoff=0.9,
                               gap_closing_cutoff=0.9, gap_closing_max_frame_count=2)
        track_df, split_df, merge_df = tracker.predict_overlap_dataframe(labels)
        seconds = time.perf_counter() - started
        track_df = track_df.reset_index()
        detections = pd.DataFrame({"t": track_df["frame"], "label": track_df["label"],
                                   "track_id": track_df["track_id"]})
        result = TrackingResult(np.zeros((0, 4)), {}, [], detections, pd.DataFrame(),
                                pd.DataFrame(), (1.0, 1.0))
        events = _laptrack_events(labels, track_df, split_df, merge_df)
        links = link_scores(result, labels, movie.labels, movie.tracks)
        scores = event_scores(events, movie.events, TOL_FRAMES, tolerance_px)
        ours_scores = event_scores(ours.events, movie.events, TOL_FRAMES, tolerance_px)
        rows.append({"seed": seed, "seconds": round(seconds, 2),
                     "ours_seconds": round(ours_seconds, 3),
                     "link_accuracy": links["link_accuracy"],
                     "ours_link_accuracy": link_scores(ours, labels, movie.labels,
                                                       movie.tracks)["link_accuracy"],
                     "fission_f1": scores["fission"]["f1"], "fusion_f1": scores["fusion"]["f1"],
                     "ours_fission_f1": ours_scores["fission"]["f1"],
                     "ours_fusion_f1": ours_scores["fusion"]["f1"]})
    return {"size": size, "frames": frames, "condition": "cuts", "movies": rows}


def _laptrack_events(labels, track_df, split_df, merge_df) -> list[Event]:
    """laptrack splits/merges as events at the children's first frame (centroid positions)."""
    from scipy import ndimage

    first = track_df.sort_values("frame").groupby("track_id").first()
    last = track_df.sort_values("frame").groupby("track_id").last()
    events = []
    for kind, table, edge in (("fission", split_df, "child_track_id"),
                              ("fusion", merge_df, "child_track_id")):
        for child, rows in table.groupby(edge):
            row = first.loc[child]
            t = int(row["frame"])
            if kind == "fission":
                position = ndimage.center_of_mass(labels[t] == row["label"])
            else:
                parent = last.loc[rows["parent_track_id"].iloc[0]]
                position = ndimage.center_of_mass(labels[int(parent["frame"])] == parent["label"])
            events.append(Event(kind, t, tuple(float(v) for v in position),
                                tuple(int(p) for p in rows["parent_track_id"]), (int(child),)))
    return events


def make_figure(path: Path) -> str:
    """Tracks and events on a simulated movie (``cuts`` condition) for the docs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    movie, labels = simulated_movie("cuts", 1, 160, 30)
    result = track(labels)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    axes[0].imshow(labels[-1] > 0, cmap="gray_r", alpha=0.35)
    axes[0].imshow(labels[0] > 0, cmap="Greens", alpha=0.25)
    for track_id, rows in result.detections.groupby("track_id"):
        axes[0].plot(rows["x"], rows["y"], lw=1)
    for event in result.events:
        axes[0].plot(event.position[1], event.position[0], "o", mfc="none", ms=9, mew=2,
                     color="m" if event.kind == "fission" else "c")
    for event in movie.events:
        axes[0].plot(event.position[1], event.position[0], "k+", ms=7)
    axes[0].set_title("tracks; found fission (magenta), fusion (cyan); + truth")
    counts = result.detections.groupby("t").size()
    axes[1].plot(counts.index, counts.to_numpy(), label="objects")
    for kind, colour in (("fission", "m"), ("fusion", "c")):
        times = [e.t for e in result.events if e.kind == kind]
        axes[1].hist(times, bins=range(0, 31, 2), alpha=0.5, color=colour, label=kind)
    axes[1].set_xlabel("frame")
    axes[1].legend()
    axes[1].set_title("objects per frame and events per 2 frames")
    for axis in axes[:1]:
        axis.set_axis_off()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path.relative_to(HERE.parent))


def print_tables(results: dict[str, Any]) -> None:
    if "simulated" in results:
        sim = results["simulated"]
        print(f"\nSimulated ({sim['movies']} movies {sim['size']}x{sim['size']}x{sim['frames']}, "
              f"events within {sim['tolerance_frames']} frames and {sim['tolerance_um']} um)")
        print(f"{'condition':<10} {'link acc':>8} {'link prec':>9} {'fis P':>6} {'fis R':>6} "
              f"{'fis F1':>6} {'fus P':>6} {'fus R':>6} {'fus F1':>6}")
        for name, c in sim["conditions"].items():
            print(f"{name:<10} {c['link_accuracy']:8.3f} {c['link_precision']:9.3f} "
                  + " ".join(f"{c[k][m]:6.2f}" for k in ("fission", "fusion")
                             for m in ("precision", "recall", "f1")))
    if "real" in results and "movies" in results["real"]:
        real = results["real"]
        print(f"\nReal fluo-mito-fission-isim ({real['sites']} marked sites, fission within "
              f"{real['tolerance_frames']} frames of the marked span)")
        print(f"{'movie':<8} {'frames':>6} {'obj/fr':>6} {'sites':>5} {'fis':>4} {'fus':>4} "
              f"{'det@1um':>7} {'false@1um':>9} {'det@2um':>7}")
        for m in real["movies"]:
            print(f"{m['movie']:<8} {m['frames']:6d} {m['objects_per_frame']:6.1f} "
                  f"{m['sites']:5d} {m['fissions']:4d} {m['fusions']:4d} "
                  f"{m['detected@1um']:7d} {m['false_events@1um']:9d} {m['detected@2um']:7d}")
        print("  " + ", ".join(f"{k} {v:.2f}" for k, v in real["summary"].items()
                               if isinstance(v, float)))
        print(f"  segmentation at the sites: {real['summary'].get('sites_by_segmentation')}")
    if "timing" in results:
        for name, t in results["timing"].items():
            print(f"\nTiming {name}: {t['shape']} labels, {t['objects_per_frame']} objects/frame, "
                  f"{t['seconds']} s")
    if "laptrack" in results and "movies" in results["laptrack"]:
        print("\nlaptrack OverLapTrack vs ours (cuts condition)")
        for row in results["laptrack"]["movies"]:
            print("  " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                   for k, v in row.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["simulated", "real", "timing"],
                        choices=["simulated", "real", "timing", "laptrack", "figure"])
    parser.add_argument("--movies", type=int, default=4, help="simulated movies per condition")
    parser.add_argument("--size", type=int, default=256, help="simulated frame edge (px)")
    parser.add_argument("--frames", type=int, default=60, help="simulated frames")
    parser.add_argument("--laptrack", action="store_true", help="also compare laptrack")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    parts = list(args.parts) + (["laptrack"] if args.laptrack else [])
    results: dict[str, Any] = {}
    if RESULTS.is_file() and args.out == RESULTS:
        import json

        results = json.loads(RESULTS.read_text())  # keep parts not rerun
    if "simulated" in parts:
        results["simulated"] = run_simulated(args.movies, args.size, args.frames)
    if "real" in parts:
        results["real"] = run_real()
    if "timing" in parts:
        results["timing"] = run_timing()
    if "laptrack" in parts:
        results["laptrack"] = run_laptrack(128, 30, 2)
    if "figure" in parts:
        results["figure"] = make_figure(HERE.parent / "docs" / "images" / "dynamics.png")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, results)
    print_tables(results)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
