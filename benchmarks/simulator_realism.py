"""Does the fluorescence simulator look like real live-cell images? Numbers, not impressions.

For each real fluorescence set in ../shared/data and the simulated channel that
shows the same organelle, every image is normalised exactly as the models
normalise a plane (:func:`napari_organelle.training.datasets.normalize_percentile`,
1-99.8 %) and described by :func:`napari_organelle.simulation.realism.describe`:
intensity histogram, radially averaged power spectrum (slope, peaks), SNR,
noise, object sizes, clipped pixels, grey levels, JPEG blockiness and background
fraction.

========================  ==========================================  ==========
organelle                 real images                                 pixel size
========================  ==========================================  ==========
er                        fluo-ernet-er-dev (1 SIM image, 8-bit JPEG)  unknown
mitochondria              fluo-mito-fission-isim, first frame of each  56 nm
                          of the 9 iSIM movies
nuclei                    fluo-nuclei-stardist (1 widefield image)     unknown
========================  ==========================================  ==========

Simulated images come from the simulator's public functions:

``training``
    :func:`~napari_organelle.simulation.scene.training_sample` with the
    organelle shown, at its random pixel size and microscope: exactly what the
    fluorescence model is trained on (before on-the-fly augmentation).
``matched``
    the same at the real set's pixel size (56 nm for the iSIM movies; 45 nm,
    the middle of the stated 30-60 nm, for the ER SIM image; none for nuclei).
``sample``
    that channel of :func:`~napari_organelle.simulation.sample.sample_live_cell`,
    the napari sample image.

Nothing is fitted or tuned here: fluo-ernet-er-dev is validation only, so its
statistics are computed and reported, never fed back into the simulator.

Usage::

    python benchmarks/simulator_realism.py                  # 16 training images per organelle
    python benchmarks/simulator_realism.py --n 32 --variants training matched

Writes benchmarks/results/simulator_realism.json and docs/images/simulator-realism.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = Path(os.environ.get("NAPARI_ORGANELLE_DATA", REPO.parent / "shared" / "data"))
RESULTS = HERE / "results" / "simulator_realism.json"
FIGURE = REPO / "docs" / "images" / "simulator-realism.png"

#: organelle -> data set, glob of its images, pixel size (nm or None), pixel size of ``matched``
REAL_SETS: dict[str, dict[str, Any]] = {
    "er": {"set": "fluo-ernet-er-dev", "glob": "test/images/*.tif", "pixel_size_nm": None,
           "matched_nm": 45.0, "assumed_nm": 45.0},
    "mitochondria": {"set": "fluo-mito-fission-isim", "glob": "movies/*.tif",
                     "pixel_size_nm": 56.0, "matched_nm": 56.0, "assumed_nm": 56.0},
    "nuclei": {"set": "fluo-nuclei-stardist", "glob": "test/images/*.tif", "pixel_size_nm": None,
               "matched_nm": None, "assumed_nm": None},
}
VARIANTS = ("training", "matched", "sample")
#: scalar statistics in the table, with how they are printed
STATISTICS: dict[str, str] = {
    "snr": "{:.1f}",
    "snr_background": "{:.1f}",
    "noise_sigma": "{:.3f}",
    "background_noise_sigma": "{:.3f}",
    "spectral_slope": "{:.2f}",
    "high_frequency_power": "{:.3f}",
    "spectral_peak_decades": "{:.2f}",
    "background_fraction": "{:.2f}",
    "object_diameter_px": "{:.1f}",
    "objects_per_mpx": "{:.0f}",
    "saturated_high": "{:.4f}",
    "saturated_low": "{:.4f}",
    "grey_levels": "{:.0f}",
    "blockiness": "{:.2f}",
    "mean": "{:.3f}",
}
#: common frequency grid (cycles per pixel) on which spectra of different sizes are compared
FREQUENCY_GRID = np.geomspace(1 / 256, 0.5, 48)
#: common grid in cycles per um, for images whose pixel size is known (or assumed)
UM_GRID = np.geomspace(0.05, 15.0, 48)
#: band of the grid over which the log-spectrum distance is taken
SPECTRUM_BAND = (0.02, 0.5)
SHAPE = (256, 256)
#: slack of the "real value inside the simulated 10-90 % range" test: a single pixel of 256 x 256
#: at the maximum is a saturated fraction of 1.5e-5, not a gap; spectral peaks below about
#: 0.1 decade are the ring-to-ring scatter of noise, not a pattern
COVER_TOLERANCE = 1e-4
COVER_TOLERANCES = {"spectral_peak_decades": 0.1}


def load_real(organelle: str, data: Path = DATA) -> list[tuple[str, np.ndarray]]:
    """The real images of one organelle as ``(name, raw 2-D array)``; a movie gives its first frame.

    Returns an empty list when the set is absent.
    """
    import tifffile

    spec = REAL_SETS[organelle]
    root = data / spec["set"]
    images = []
    for path in sorted(root.glob(spec["glob"])):
        raw = tifffile.imread(path)
        if raw.ndim == 3:  # (T, Y, X) time-lapse: the first frame, before any bleaching
            raw = raw[0]
        images.append((path.stem, np.asarray(raw)))
    return images


def simulate(organelle: str, variant: str, n: int, seed: int = 0
             ) -> list[tuple[str, np.ndarray, dict[str, Any]]]:
    """Simulated images of one organelle as ``(name, raw, info)``; see the module docstring."""
    if variant == "sample":
        from napari_organelle.simulation.sample import sample_live_cell

        out = []
        for index in range(n):
            image, names, pixel_size = sample_live_cell(seed + index)
            info = {"pixel_size_nm": pixel_size, "modality": "confocal", "bit_depth": 12}
            out.append((f"sample/{index}", image[names.index(organelle)].astype(np.float32), info))
        return out

    from napari_organelle.simulation.scene import training_sample

    pixel_size = None
    if variant == "matched":
        pixel_size = REAL_SETS[organelle]["matched_nm"]
        if pixel_size is None:
            return []
    rng = np.random.default_rng([seed, hash_name(organelle), VARIANTS.index(variant)])
    out = []
    for index in range(n):
        raw, _, info = training_sample(rng, SHAPE, [organelle], shown=organelle,
                                       pixel_size_nm=pixel_size, return_info=True)
        microscope = info["microscope"]
        out.append((f"{variant}/{index:02d}", raw, {
            "pixel_size_nm": float(info["pixel_size_nm"]),
            "modality": microscope.modality,
            "detector": microscope.detector,
            "bit_depth": int(microscope.bit_depth),
            "peak_photons": float(microscope.peak_photons),
        }))
    return out


def hash_name(name: str) -> int:
    """A stable small integer for a string (Python's ``hash`` changes between runs)."""
    return int.from_bytes(name.encode(), "little") % 2**31


def measure(raw: np.ndarray, pixel_size_nm: float | None) -> tuple[dict[str, Any], np.ndarray]:
    """Statistics of one raw image and its normalised version (as the models see it)."""
    from napari_organelle.simulation.realism import describe
    from napari_organelle.training.datasets import normalize_percentile

    normalized = normalize_percentile(raw, 1.0, 99.8)
    stats = describe(raw, normalized, pixel_size_nm)
    log_power = np.log10(np.maximum(stats["power"], 1e-20))
    stats["log_power_grid"] = np.interp(np.log10(FREQUENCY_GRID), np.log10(stats["frequency"]),
                                        log_power)
    if pixel_size_nm:  # per um, NaN outside what this pixel size samples
        stats["log_power_um_grid"] = np.interp(np.log10(UM_GRID),
                                               np.log10(stats["frequency_per_um"]), log_power,
                                               left=np.nan, right=np.nan)
    return stats, normalized


def spectrum_distance(a: np.ndarray, b: np.ndarray, per_um: bool = False) -> float:
    """RMS difference (decades) of two log10 spectra on the common grid.

    On :data:`FREQUENCY_GRID` (cycles per pixel) inside :data:`SPECTRUM_BAND`,
    or with ``per_um`` on :data:`UM_GRID` wherever both spectra are defined.
    """
    if per_um:
        inside = np.isfinite(a) & np.isfinite(b)
    else:
        inside = (FREQUENCY_GRID >= SPECTRUM_BAND[0]) & (FREQUENCY_GRID <= SPECTRUM_BAND[1])
    if not inside.any():
        return float("nan")
    return float(np.sqrt(np.mean((a[inside] - b[inside]) ** 2)))


def median_spectrum(stats: list[dict[str, Any]], key: str) -> np.ndarray | None:
    """Median log spectrum over images (ignoring grid points an image does not sample)."""
    curves = [s[key] for s in stats if key in s]
    if not curves:
        return None
    curves = np.asarray(curves)
    out = np.full(curves.shape[1], np.nan)
    sampled = np.isfinite(curves).any(axis=0)
    out[sampled] = np.nanmedian(curves[:, sampled], axis=0)
    return out


def clipped_pixels(normalized: np.ndarray) -> np.ndarray:
    """Normalised grey values clipped to the histogram range, for the Wasserstein distance."""
    from napari_organelle.simulation.realism import HISTOGRAM_RANGE

    return np.clip(normalized.ravel(), *HISTOGRAM_RANGE)


def compare(real: list[dict[str, Any]], sims: list[dict[str, Any]]) -> dict[str, Any]:
    """Gaps between real and simulated statistics, and distances between their distributions.

    Per statistic: the real median, the simulated median and 10-90 % range,
    the gap (simulated median minus real) and whether the real value lies in
    the simulated 10-90 % range (what domain randomisation must at least do).
    Distances: Wasserstein between each simulated image's grey values and the
    pooled real ones (median over images), histogram intersection of the mean
    histograms, RMS log-spectrum distance of each image to the real median.
    Where several real images exist, the same distances among real images
    give the scale of natural variation.
    """
    from napari_organelle.simulation.realism import histogram_intersection, wasserstein

    table = {}
    for name in STATISTICS:
        r = float(np.median([s[name] for s in real]))
        values = np.array([s[name] for s in sims], dtype=np.float64)
        low, mid, high = (float(v) for v in np.percentile(values, [10, 50, 90]))
        slack = COVER_TOLERANCES.get(name, COVER_TOLERANCE)
        table[name] = {"real": r, "sim_median": mid, "sim_p10": low, "sim_p90": high,
                       "gap": mid - r, "covered": bool(low - slack <= r <= high + slack)}

    real_pool = np.concatenate([s["_pixels"] for s in real])
    real_hist = np.mean([s["histogram"] for s in real], axis=0)
    sim_hist = np.mean([s["histogram"] for s in sims], axis=0)
    real_spectrum = np.median([s["log_power_grid"] for s in real], axis=0)
    sim_spectrum = np.median([s["log_power_grid"] for s in sims], axis=0)
    distances = {
        "wasserstein_median": float(np.median(
            [wasserstein(s["_pixels"], real_pool) for s in sims])),
        "histogram_intersection": histogram_intersection(real_hist, sim_hist),
        "spectrum_rms_decades": float(np.median(
            [spectrum_distance(s["log_power_grid"], real_spectrum) for s in sims])),
        "spectrum_rms_decades_of_medians": spectrum_distance(sim_spectrum, real_spectrum),
    }
    real_um, sim_um = median_spectrum(real, "log_power_um_grid"), median_spectrum(
        sims, "log_power_um_grid")
    if real_um is not None and sim_um is not None:
        distances["spectrum_per_um_rms_decades"] = float(np.nanmedian(
            [spectrum_distance(s["log_power_um_grid"], real_um, per_um=True) for s in sims]))
    if len(real) > 1:
        pairs = [(i, j) for i in range(len(real)) for j in range(len(real)) if i < j]
        distances["real_vs_real_wasserstein_median"] = float(np.median(
            [wasserstein(real[i]["_pixels"], real[j]["_pixels"]) for i, j in pairs]))
        distances["real_vs_real_spectrum_rms_decades"] = float(np.median(
            [spectrum_distance(real[i]["log_power_grid"], real[j]["log_power_grid"])
             for i, j in pairs]))
    return {"statistics": table, "distances": distances,
            "real_mean_histogram": real_hist.tolist(), "sim_mean_histogram": sim_hist.tolist(),
            "real_median_log_power": real_spectrum.tolist(),
            "sim_median_log_power": sim_spectrum.tolist(),
            "real_median_log_power_per_um": None if real_um is None else nan_list(real_um),
            "sim_median_log_power_per_um": None if sim_um is None else nan_list(sim_um)}


def nan_list(values: np.ndarray) -> list[float | None]:
    """A float array as a JSON list, NaN as null."""
    return [None if not np.isfinite(v) else round(float(v), 4) for v in values]


def scalars(stats: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready part of one image's statistics (scalars and its spectrum on the grid)."""
    out = {k: (float(v) if isinstance(v, (float, np.floating)) else v)
           for k, v in stats.items() if np.isscalar(v)}
    out["log_power_grid"] = np.round(stats["log_power_grid"], 3).tolist()
    return out


def format_table(organelle: str, variant: str, result: dict[str, Any]) -> str:
    """A readable text table of one comparison."""
    header = f"{'statistic':<22}{'real':>10}{'sim median':>12}{'sim 10-90 %':>22}{'gap':>10}"
    lines = [f"\n{organelle} - real vs simulated ({variant})", f"  {header}  in range"]
    for name, fmt in STATISTICS.items():
        row = result["statistics"][name]
        span = f"{fmt.format(row['sim_p10'])} - {fmt.format(row['sim_p90'])}"
        lines.append(f"  {name:<22}{fmt.format(row['real']):>10}{fmt.format(row['sim_median']):>12}"
                     f"{span:>22}{fmt.format(row['gap']):>10}  {'yes' if row['covered'] else 'NO'}")
    for name, value in result["distances"].items():
        lines.append(f"  {name:<40}{value:>10.3f}")
    return "\n".join(lines)


def crop(image: np.ndarray, size: int = 256) -> np.ndarray:
    """The central ``size`` x ``size`` crop (or the whole image when smaller)."""
    y0 = max(0, (image.shape[0] - size) // 2)
    x0 = max(0, (image.shape[1] - size) // 2)
    return image[y0:y0 + size, x0:x0 + size]


def figure(panels: dict[str, dict[str, Any]], path: Path = FIGURE) -> None:
    """Real vs simulated: crops, mean histograms and median spectra, one row per organelle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_organelle.simulation.realism import HISTOGRAM_BINS, HISTOGRAM_RANGE

    edges = np.linspace(*HISTOGRAM_RANGE, HISTOGRAM_BINS + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    rows = list(panels)
    fig, axes = plt.subplots(len(rows), 7, figsize=(26, 3.8 * len(rows)),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.3, 1.3, 1.3]})
    axes = np.atleast_2d(axes)
    colours = {"training": "tab:red", "matched": "tab:orange", "sample": "tab:green"}
    for row, organelle in zip(axes, rows):
        panel = panels[organelle]
        crops = [("real: " + panel["real_name"], panel["real_crop"])] + panel["sim_crops"]
        for ax, (title, image) in zip(row[:4], crops):
            ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.set_axis_off()
        hist_ax, spec_ax, um_ax = row[4], row[5], row[6]
        if panel["real_um"] is not None:
            um_ax.loglog(UM_GRID, 10 ** panel["real_um"], "k", lw=2.5,
                         label="real" + panel["real_um_note"])
        hist_ax.semilogy(centres, np.maximum(panel["real_hist"], 1e-6), "k", lw=2.5, label="real")
        spec_ax.loglog(FREQUENCY_GRID, 10 ** panel["real_spectrum"], "k", lw=2.5, label="real")
        for curve in panel.get("real_spectra", []):
            spec_ax.loglog(FREQUENCY_GRID, 10 ** np.asarray(curve), "k", lw=0.5, alpha=0.4)
        for variant, data in panel["variants"].items():
            colour = colours.get(variant, "tab:blue")
            for curve in data["spectra"]:
                spec_ax.loglog(FREQUENCY_GRID, 10 ** np.asarray(curve), color=colour, lw=0.4,
                               alpha=0.3)
            hist_ax.semilogy(centres, np.maximum(data["hist"], 1e-6), color=colour, lw=1.8,
                             label=f"sim {variant}")
            spec_ax.loglog(FREQUENCY_GRID, 10 ** np.asarray(data["spectrum"]), color=colour,
                           lw=1.8, label=f"sim {variant} (median)")
            if data["um"] is not None:
                um_ax.loglog(UM_GRID, 10 ** data["um"], color=colour, lw=1.8,
                             label=f"sim {variant} (median)")
        hist_ax.set_title(f"{organelle}: mean grey-value histogram (normalised 1-99.8 %)",
                          fontsize=9)
        hist_ax.set_xlabel("normalised intensity")
        hist_ax.set_ylabel("fraction of pixels")
        hist_ax.set_ylim(1e-5, 1)
        hist_ax.legend(fontsize=8)
        spec_ax.set_title(f"{organelle}: radially averaged power spectrum", fontsize=9)
        spec_ax.set_xlabel("spatial frequency (cycles / pixel)")
        spec_ax.set_ylabel("power (normalised image)")
        spec_ax.legend(fontsize=8)
        um_ax.set_title(f"{organelle}: the same per um (at each image's pixel size)", fontsize=9)
        um_ax.set_xlabel("spatial frequency (cycles / um)")
        um_ax.set_ylabel("power per pixel")
        um_ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    from PIL import Image

    # a 256-colour palette keeps the PNG small (grey crops and a few line colours)
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def run(n: int, variants: list[str], seed: int, n_sample: int) -> dict[str, Any]:
    """Measure every organelle and variant; print the tables; return the JSON-ready results."""
    results: dict[str, Any] = {"n_simulated": n, "n_sample": n_sample, "seed": seed,
                               "normalisation": "normalize_percentile 1-99.8 %",
                               "frequency_grid_cycles_per_px": FREQUENCY_GRID.tolist(),
                               "organelles": {}}
    panels: dict[str, dict[str, Any]] = {}
    for organelle, spec in REAL_SETS.items():
        real_images = load_real(organelle)
        if not real_images:
            print(f"{organelle}: {spec['set']} not found under {DATA}; skipped")
            continue
        real_stats, real_records = [], []
        first_normalized = None
        for name, raw in real_images:
            # per-um spectra at the stated pixel size, or the assumed one (marked in the JSON)
            stats, normalized = measure(raw, spec["assumed_nm"])
            stats["_pixels"] = clipped_pixels(normalized)
            real_stats.append(stats)
            real_records.append({"name": name, "shape": list(raw.shape), "dtype": str(raw.dtype),
                                 **scalars(stats)})
            first_normalized = normalized if first_normalized is None else first_normalized
        entry: dict[str, Any] = {"set": spec["set"], "pixel_size_nm": spec["pixel_size_nm"],
                                 "pixel_size_nm_for_per_um": spec["assumed_nm"],
                                 "real": real_records, "variants": {}}
        panel: dict[str, Any] = {
            "real_name": real_images[0][0], "real_crop": crop(first_normalized),
            "real_hist": np.mean([s["histogram"] for s in real_stats], axis=0),
            "real_spectrum": np.median([s["log_power_grid"] for s in real_stats], axis=0),
            "real_spectra": ([s["log_power_grid"] for s in real_stats]
                             if len(real_stats) > 1 else []),
            "real_um": median_spectrum(real_stats, "log_power_um_grid"),
            "real_um_note": ("" if spec["assumed_nm"] is None or spec["pixel_size_nm"]
                             else f" (assumed {spec['assumed_nm']:.0f} nm)"),
            "sim_crops": [], "variants": {}}
        for variant in variants:
            started = time.perf_counter()
            simulated = simulate(organelle, variant, n_sample if variant == "sample" else n, seed)
            if not simulated:
                continue
            sim_stats, sim_records = [], []
            for index, (name, raw, info) in enumerate(simulated):
                stats, normalized = measure(raw, info["pixel_size_nm"])
                stats["_pixels"] = clipped_pixels(normalized)
                sim_stats.append(stats)
                sim_records.append({"name": name, **info, **scalars(stats)})
                if variant == "training" and index < 3:
                    title = (f"sim {index}: {info['modality']}, {info['pixel_size_nm']:.0f} nm, "
                             f"{info['bit_depth']}-bit")
                    panel["sim_crops"].append((title, crop(normalized)))
            result = compare(real_stats, sim_stats)
            result["images"] = sim_records
            result["seconds"] = round(time.perf_counter() - started, 1)
            entry["variants"][variant] = result
            panel["variants"][variant] = {"hist": np.asarray(result["sim_mean_histogram"]),
                                          "spectrum": np.asarray(result["sim_median_log_power"]),
                                          "spectra": [s["log_power_grid"] for s in sim_stats],
                                          "um": median_spectrum(sim_stats, "log_power_um_grid")}
            print(format_table(organelle, variant, result), flush=True)
        results["organelles"][organelle] = entry
        panels[organelle] = panel
    if panels:
        figure(panels)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=16, help="simulated images per organelle")
    parser.add_argument("--n-sample", type=int, default=4,
                        help="sample_live_cell images per organelle (2 s each)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"no development data at {DATA}: nothing to compare with")
        return 0
    started = time.perf_counter()
    results = run(args.n, args.variants, args.seed, args.n_sample)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["command"] = " ".join(["python benchmarks/simulator_realism.py",
                                   *(sys.argv[1:] if argv is None else argv)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}"
          f" and {FIGURE.relative_to(REPO)} in {results['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
