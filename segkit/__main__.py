"""``python -m segkit``: the ``segkit`` command (:mod:`segkit.commands`)."""

from segkit.commands import main

if __name__ == "__main__":
    main()
