"""``sp-istio-cache backend-image ...``: the backend's container image commands."""

from __future__ import annotations

import typer
from rich.console import Console

backend_image_app = typer.Typer(help="The cache backend's container image (built locally, no registry).",
                                no_args_is_help=True)


@backend_image_app.command("build")
def backend_image_build(
        force: bool = typer.Option(False, help="Build even when an image with this content exists.")) -> None:
    """Build sp-istio-cache-backend:<version>-<hash> from this machine's Python (FROM scratch, no network)."""
    from ..runtime.image import ImageBuildError, RuntimeUnavailable
    from .image import ensure_image

    try:
        info = ensure_image(force=force)
    except (ImageBuildError, RuntimeUnavailable) as exc:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    state = "built" if info.built else "up to date (build skipped)"
    Console(soft_wrap=True).print(f"{info.tag} {state}\n  size {info.size_bytes / 2**20:.1f} MiB\n"
                                  f"  {info.seconds:.1f} s")
