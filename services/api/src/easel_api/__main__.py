"""`python -m easel_api`: serve the api on API_PORT."""

from __future__ import annotations

import uvicorn

from easel_shared.logs import configure_logging
from easel_shared.settings import load_settings_or_exit


def main() -> None:
    settings = load_settings_or_exit("api")
    configure_logging(settings.log_level, settings.log_format)
    from easel_api.main import create_app
    from easel_api.server import EaselServer

    app = create_app(settings)
    config = uvicorn.Config(app, host="0.0.0.0", port=settings.api_port, log_config=None,
                            timeout_graceful_shutdown=10)
    EaselServer(config, app).run()


if __name__ == "__main__":
    main()
