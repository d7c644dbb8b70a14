"""The web app: one static page (chat, compare, agent, knowledge base, search) over the OpenAI-compatible API.

`mount_web` adds it to an app (`puyu serve` serves it at `/`); `create_proxy_app` serves it alone in front of
any OpenAI-compatible endpoint (`puyu web --api URL`).
"""

from puyu.web.mount import STATIC_DIR, mount_web

__all__ = ["STATIC_DIR", "mount_web"]
