"""The HTTP layer: the API's protocol and the wire.

Building requests (``request``), reading responses into models or typed errors
(``response``), JSON with exact decimals (``codec``), retry policy and deadlines
(``retry``), sending with retries (``sending``), the aiohttp transport (``transport``) and
the caller the client sends through (``caller``: the transport, policy, deadlines and the
error choke point). Everything but ``transport`` and ``caller`` is pure protocol and imports
no aiohttp.

May import: the bottom layer (``_exchange``, ``_errors``, ``_context``, ``_models``,
``_converter``, ``_money``, ``_config``, ``_redact``, ``_logging``, ``_version``).
"""
