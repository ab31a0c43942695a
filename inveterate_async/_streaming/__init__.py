"""The streaming layer: reading many members' ledgers at once (``fanout``: the
``CreditStream`` behind ``InveterateClient.iter_credits_many``; ``members``: how members
are given; ``messages``: what its workers and consumer pass each other), and stopping a
stream that keeps failing for one cause (``failfast``).

May import: the bottom layer (``_errors``, ``_models`` and the other plain modules). It
reads ledgers through a callable it is given, never through the client or ``_http``.
"""
