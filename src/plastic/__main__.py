"""``python -m plastic`` runs the command line."""

from plastic.cli.main import main

if __name__ == "__main__":
    main()
