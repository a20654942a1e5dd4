"""``python -m plastic`` runs the command line."""

from plastic.cli.app import main

if __name__ == "__main__":
    main()
