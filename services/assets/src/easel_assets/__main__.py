"""`python -m easel_assets`: serve the assets library (and run its retention relay) on ASSETS_PORT."""

from __future__ import annotations

import uvicorn

from easel_shared.logs import configure_logging
from easel_shared.settings import load_settings_or_exit


def main() -> None:
    settings = load_settings_or_exit("assets")
    configure_logging(settings.log_level, settings.log_format)
    from easel_assets.main import create_app

    uvicorn.run(
        create_app(settings), host="0.0.0.0", port=settings.assets_port, log_config=None, timeout_graceful_shutdown=10
    )


if __name__ == "__main__":
    main()
