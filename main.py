"""Runs the destination from a source checkout: python main.py spec|check|write ..."""

from destination_kvdb.run import run

if __name__ == "__main__":
    run()
