"""The ``sarcoreg`` command line.

sarcoreg coregister REFERENCE TARGET --out DIR [--method M] [--transform T] ...
    exit code: 0 verdict ok, 3 uncertain (outputs written, report marked), 2 failed or bad input
    (nothing written; the reasons on stderr)
sarcoreg demo [--out DIR]        # a real Sentinel-1/2 pair with a known offset
sarcoreg matchers                # list the matchers
sarcoreg diagnostics [--json]    # versions, devices, models of this interpreter
sarcoreg worker                  # JSON-lines worker mode (used by the QGIS plugin)
sarcoreg batch PAIRS --out DIR   # many pairs on Dask distributed (see sarcoreg.core.batch.cli)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "demo_main", "format_methods"]


def _tqdm_progress() -> Any:
    from tqdm import tqdm

    from .progress import Progress

    bar = tqdm(
        total=100,
        bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}] {postfix}",
        file=sys.stderr,
        dynamic_ncols=True,
        disable=not sys.stderr.isatty(),
    )

    def update(fraction: float, message: str) -> None:
        bar.n = round(100.0 * fraction, 1)
        if message:
            bar.set_postfix_str(message[:60], refresh=False)
        bar.refresh()

    return Progress(callback=update), bar


def _add_coregister_args(p: argparse.ArgumentParser) -> None:
    from .engine import CoregOptions
    from .methods import method_names

    d = CoregOptions()
    p.add_argument("reference", help="reference raster (usually optical); its grid and CRS are kept")
    p.add_argument("target", help="raster to co-register (usually SAR)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--method", default=d.method, choices=method_names(),
                   help=f"matching method (default {d.method}; see `sarcoreg matchers`)")
    p.add_argument(
        "--transform",
        default=d.transform,
        help=f"shift, similarity, affine, homography, poly1, poly2, poly3 or tps (default {d.transform})",
    )
    p.add_argument("--spacing", type=int, default=d.spacing,
                   help="tie-point grid spacing, px (default: auto from the overlap size, see README)")
    p.add_argument("--window", type=int, default=d.window, help="template size, px (default: auto, at most 64)")
    p.add_argument(
        "--radius",
        type=int,
        default=d.search_radius,
        dest="search_radius",
        help="search radius after the coarse offset, px (default: auto from --expected-error and the pixel size; "
        "16 px without georeferencing)",
    )
    p.add_argument("--expected-error", type=float, default=d.expected_error_m, dest="expected_error_m",
                   help=f"expected georeferencing error, metres; sizes the automatic search radius "
                   f"(default {d.expected_error_m:g}, Sentinel-1 GRD)")
    p.add_argument("--coarse-rotation-scale", default=d.coarse_rotation_scale, choices=["auto", "on", "off"],
                   dest="coarse_rotation_scale",
                   help="coarse stage searches rotation and scale too (auto: for pairs without georeferencing)")
    p.add_argument("--candidates", default=d.candidates, choices=["grid", "keypoints", "both"])
    p.add_argument("--reference-bands", type=int, nargs="+", help="1-based reference bands (default all)")
    p.add_argument("--target-bands", type=int, nargs="+", help="1-based target bands (default all)")
    p.add_argument("--reference-modality", default="auto", choices=["auto", "optical", "sar"])
    p.add_argument("--target-modality", default="auto", choices=["auto", "optical", "sar"])
    p.add_argument("--sar-scale", default="auto", choices=["auto", "amplitude", "intensity", "db"])
    p.add_argument("--speckle-filter", action="store_true", help="Lee-filter SAR windows")
    p.add_argument("--no-coarse", action="store_true", help="skip the coarse offset on an overview")
    p.add_argument("--min-reliability", type=float, default=d.min_reliability)
    p.add_argument("--ransac-threshold", type=float, default=d.ransac_threshold_px, dest="ransac_threshold_px")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--refuse-uncertain",
        action="store_true",
        help="treat an uncertain verdict like a failed one: write nothing and exit 2",
    )
    p.add_argument("--model", help="learned matchers: a model name (`sarcoreg models list`) or a .onnx / .pt file")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="learned matchers: device")
    p.add_argument(
        "--keypoints",
        help="method shared: keypoint matcher for the shared-modality images (default disk-lightglue; "
        "sift, aliked-lightglue, xfeat ...)",
    )
    p.add_argument("--json", action="store_true", help="print report.json to stdout at the end")


def format_methods() -> str:
    """``sarcoreg matchers``: one line per method of the catalog, in catalog order."""
    from .methods import methods

    lines = []
    for spec in methods():
        extra = [f"default model {spec.default_model}"] if spec.default_model else []
        if spec.trainable:
            extra.append(f"sarcoreg-train {spec.training_command}")
        lines.append(f"{spec.name:12s} {spec.description}" + (f" [{'; '.join(extra)}]" if extra else ""))
    return "\n".join(lines)


def _options_from_args(a: argparse.Namespace) -> Any:
    from .engine import CoregOptions
    from .verdict import VerdictOptions

    return CoregOptions(
        method=a.method,
        transform=a.transform,
        spacing=a.spacing,
        window=a.window,
        search_radius=a.search_radius,
        expected_error_m=a.expected_error_m,
        coarse_rotation_scale=a.coarse_rotation_scale,
        candidates=a.candidates,
        reference_bands=a.reference_bands,
        target_bands=a.target_bands,
        reference_modality=a.reference_modality,
        target_modality=a.target_modality,
        sar_scale=a.sar_scale,
        speckle_filter=a.speckle_filter,
        coarse=not a.no_coarse,
        min_reliability=a.min_reliability,
        ransac_threshold_px=a.ransac_threshold_px,
        seed=a.seed,
        verdict=VerdictOptions(keep_uncertain=not a.refuse_uncertain),
        matcher_options=_matcher_options(a.model, a.device, a.keypoints),
    )


def _matcher_options(model: str | None, device: str, keypoints: str | None = None) -> dict[str, Any]:
    """Matcher options from ``--model`` / ``--device`` / ``--keypoints`` (only those the user gave)."""
    options: dict[str, Any] = {}
    if keypoints:
        options["keypoints"] = keypoints
    if model:
        options["model"] = model
    if device != "auto":
        options["device"] = device
    return options


def _print_summary(res: Any, out: Path) -> None:
    r = res.report
    print(
        f"method {r['method']} ({r['device']}), transform {r['transform']['type']}: "
        f"{r['n_inliers']} inliers of {r['n_tiepoints']} tie points ({r['n_candidates']} candidates)"
    )
    print(
        f"RMSE {r['rmse_px']:.3f} px ({r['rmse_map']:.3f} {r['map_units']}), CE90 {r['ce90_px']:.3f} px, "
        f"{r['runtime_s']:.1f} s"
    )
    cv = r.get("rmse_cv_px")
    print(f"verdict: {r.get('status', 'unknown')}; cross-validated check-point RMSE "
          + (f"{cv:.3f} px" if cv is not None else "not computable"))
    print(f"outputs in {out}: " + ", ".join(Path(p).name for p in res.outputs.values()))
    if "report_html" in res.outputs:
        print(f"report: {res.outputs['report_html']}")


#: Exit code of ``sarcoreg coregister`` for an ``ok`` verdict.
EXIT_OK = 0
#: Exit code for a ``failed`` verdict (nothing written) and for bad input.
EXIT_FAILED = 2
#: Exit code for an ``uncertain`` verdict (outputs written, report marked ``uncertain``).
EXIT_UNCERTAIN = 3


def coregister_main(a: argparse.Namespace) -> int:
    """Run ``sarcoreg coregister``; the exit code follows the verdict (0 ok, 3 uncertain, 2 failed)."""
    from .engine import coregister
    from .verdict import CoregistrationFailed
    from .worker_protocol import to_jsonable

    progress, bar = _tqdm_progress()
    try:
        res = coregister(a.reference, a.target, a.out, _options_from_args(a), progress)
    except CoregistrationFailed as exc:
        bar.close()
        print("sarcoreg coregister: failed, no output was written.", file=sys.stderr)
        for reason in exc.reasons:
            print(f"  - {reason}", file=sys.stderr)
        if a.json and exc.report is not None:
            print(json.dumps(to_jsonable(exc.report), indent=2))
        return EXIT_FAILED
    finally:
        bar.close()
    _print_summary(res, Path(a.out))
    if a.json:
        print(json.dumps(to_jsonable(res.report), indent=2))
    if res.report.get("status") == "uncertain":
        print("sarcoreg coregister: the result is uncertain (outputs written, report marked uncertain):",
              file=sys.stderr)
        for reason in res.report.get("reasons") or []:
            print(f"  - {reason}", file=sys.stderr)
        return EXIT_UNCERTAIN
    return EXIT_OK


def demo_main(a: argparse.Namespace) -> int:
    """Co-register a real Sentinel-1/2 pair whose SAR georeferencing was offset by a known amount."""
    from .demo import run_demo

    progress, bar = _tqdm_progress()
    try:
        summary = run_demo(Path(a.out), progress=progress, shift_px=(a.dx, a.dy))
    finally:
        bar.close()
    print(summary["text"])
    return 0 if summary["ok"] else 1


def models_main(a: argparse.Namespace) -> int:
    """``sarcoreg models list | install PACK.zip [--force] | pack [NAME ...] --out DIR``."""
    from ..models.card import user_models_dir
    from ..models.packs import build_packs, install_pack, installed_models

    if a.action == "install":
        if len(a.items) != 1:
            raise ValueError("models install takes one model pack (PACK.zip)")
        result = install_pack(a.items[0], force=a.force)
        print(f"{result.name} ({result.method}): {result.status} in {result.folder}")
        if result.shadowed_by:
            print(f"note: a model called {result.name} in {result.shadowed_by} is found first and is the one used")
        return 0
    if a.action == "pack":
        for path in build_packs(Path(a.out), a.items or None):
            print(f"{path}\t{path.stat().st_size / 2**20:.1f} MiB")
        return 0
    if a.items:
        raise ValueError("models list takes no arguments")
    from ..models.registry import check_card, list_cards

    cards = {c.name: c for c in list_cards()}
    for row in sorted(installed_models(), key=lambda r: (r["name"], not r["active"])):
        if not row["active"] or row["name"] not in cards:
            print(f"{row['name']}\t{row['method']}\t-\tSHADOWED (a folder searched earlier has this name)\t"
                  f"{row['origin']}\t{row['file']}")
            continue
        card = cards[row["name"]]
        status = check_card(card)
        state = "ok" if status["ok"] else f"BROKEN ({status['error']})"
        size = card.inputs.get("patch_size", "?")
        print(f"{card.name}\t{card.method}\tpatch {size}\t{state}\t{row['origin']}\t{card.path}")
    print(f"user model folder: {user_models_dir()}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sarcoreg`` command."""
    from .methods import default_model

    parser = argparse.ArgumentParser(prog="sarcoreg", description="Co-register SAR rasters to optical rasters.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_coregister_args(sub.add_parser("coregister", help="co-register TARGET onto REFERENCE"))
    demo = sub.add_parser("demo", help="co-register a real Sentinel-1/2 pair with a known offset")
    demo.add_argument("--out", default="sarcoreg-demo", help="output folder (default ./sarcoreg-demo)")
    demo.add_argument("--dx", type=float, default=3.4, help="offset put into the SAR georeferencing, px")
    demo.add_argument("--dy", type=float, default=-2.6, help="offset put into the SAR georeferencing, px")
    shared = sub.add_parser("shared-layer", help="shared-modality layer of a SAR or optical raster")
    shared.add_argument("raster", help="input raster (never modified)")
    shared.add_argument("output", help="output GeoTIFF (3 bands, the input's grid)")
    shared.add_argument("--modality", required=True, choices=["sar", "optical"], help="which network to run")
    shared_model = default_model("shared")
    shared.add_argument("--model", default=shared_model, help=f"card name or weight file (default {shared_model})")
    shared.add_argument("--bands", type=int, nargs="+", help="1-based input bands in the model's order")
    shared.add_argument("--device", default="auto", help="auto | cpu | cuda")
    shared.add_argument("--tile", type=int, default=512, help="tile side, multiple of 32 (default 512)")
    shared.add_argument("--overlap", type=int, default=64, help="blended overlap of tiles, px (default 64)")
    shared.add_argument("--batch-size", type=int, default=4, help="tiles per model call (default 4)")
    shared.add_argument("--sar-scale", default="auto", choices=["auto", "db", "intensity", "amplitude"])
    shared.add_argument("--dtype", default="uint8", choices=["uint8", "float32"], help="output type (default uint8)")
    sub.add_parser("matchers", help="list the matching methods (the method catalog)")
    models = sub.add_parser("models", help="the models: list them, install a model pack, build packs")
    models.add_argument(
        "action", nargs="?", choices=["list", "install", "pack"], default="list",
        help="list: one model per line, name first, with where it comes from; install PACK.zip [--force]: "
             "into the user's model folder; pack [NAME ...] --out DIR: build model packs (default: every model "
             "in the package's models/)",
    )
    models.add_argument("items", nargs="*", metavar="PACK_OR_NAME", help="install: the pack; pack: model names")
    models.add_argument("--force", action="store_true", help="install: replace an installed model with other files")
    models.add_argument("--out", default="dist/models", help="pack: output folder (default dist/models)")
    diag = sub.add_parser("diagnostics", help="versions, devices and models of this interpreter")
    diag.add_argument("--json", action="store_true")
    sub.add_parser("worker", help="JSON-lines worker mode (one job on stdin)")
    from .batch.cli import add_batch_arguments

    add_batch_arguments(sub.add_parser("batch", help="co-register many pairs on Dask distributed (resumable)"))
    a = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )

    if a.command == "worker":
        from .worker import main as worker_main

        return worker_main()
    try:
        if a.command == "coregister":
            return coregister_main(a)
        if a.command == "demo":
            return demo_main(a)
        if a.command == "batch":
            from .batch.cli import batch_main

            return batch_main(a)
        if a.command == "shared-layer":
            from .shared_layers import write_shared_layer

            progress, bar = _tqdm_progress()
            try:
                facts = write_shared_layer(
                    a.raster, a.output, a.modality, a.model, a.bands, sar_scale=a.sar_scale, tile=a.tile,
                    overlap=a.overlap, batch_size=a.batch_size, device=a.device, dtype=a.dtype, progress=progress,
                )
            finally:
                bar.close()
            print(f"{facts['output']}: {facts['width']} x {facts['height']} px, model {facts['model']} on "
                  f"{facts['device']} ({facts['backend']}), {facts['seconds']:.1f} s")
            return 0
        if a.command == "matchers":
            print(format_methods())
            return 0
        if a.command == "models":
            return models_main(a)
        if a.command == "diagnostics":
            from .diagnostics import collect, format_text

            rep = collect()
            print(json.dumps(rep, indent=2) if a.json else format_text(rep))
            return 0
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"sarcoreg {a.command}: error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
