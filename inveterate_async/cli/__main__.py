"""``python -m inveterate_async.cli``: the same as the ``inveterate`` command."""

from ._app import main

if __name__ == "__main__":
    main()
