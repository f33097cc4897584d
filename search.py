"""Search train.py's settings: a study of trials, each a train.py run in its own process and folder, sampled by
Optuna's TPE, pruned after each epoch, resumable after any kill, and shared by many workers through one storage.

    python search.py --study-dir studies/domains --trials 12 --space lr=2e-5:3e-4:log --space epochs=2:6 \
        --model minilm --data ../shared/data/eurlex57k --label-column domains      # any other train.py flag
    python search.py ... --storage postgresql://user:pw@host/db                      # the same on every machine

Every train.py flag passes through to every trial; the study's own flags are engine/search/space.py's fields.
"""
from engine.search.space import SEARCH_CLI_FIELDS
from engine.config import parse_flags


def main(argv=None) -> dict:
    given = parse_flags(SEARCH_CLI_FIELDS, argv, "Search train.py's settings: an Optuna study of train.py runs.")
    from engine.cli import run_cli
    from engine.config import check_machine, check_values, with_defaults
    from engine.search.study import run_search

    def search():
        check_values(SEARCH_CLI_FIELDS, with_defaults(SEARCH_CLI_FIELDS, given))
        check_machine(SEARCH_CLI_FIELDS, given)
        return run_search(given)

    return run_cli(search)


if __name__ == "__main__":
    main()
