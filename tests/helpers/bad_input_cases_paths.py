"""The rows of docs/bad_input.md on where a command reads and writes (bad_input_cases.py gathers every family):
experiment directories, `train`'s --output, storage paths and URIs, `--study-db`, `convert`'s OUT."""
from __future__ import annotations

from bad_input_cases_flags import S

EXPERIMENT = [
    # ---- experiment directories ------------------------------------------------------------------------------
    ("resume-empty", "experiment", "`--resume ''` (say, an unset shell variable): not a new search",
     "search --resume ''", "--resume",
     "argument --resume: --resume must name an experiment directory, but got an empty value"),
    ("resume-not-experiment", "experiment", "`--resume` of a directory that is no experiment",
     "search --resume imgs", "--resume",
     "--resume 'imgs': not an experiment directory (no settings.json)"),
    ("experiment-exists", "experiment", "existing experiment without `--resume`",
     "search spaces/ok.yaml --storage-path exps --name done --target-accuracy 0.5", "--resume",
     "experiment $PWD/exps/done exists: continue it with --resume $PWD/exps/done, or pick another --name"),
    ("resume-no-study", "experiment", "`--resume` of an experiment whose Optuna study is gone",
     "search --resume exps/nostudy", "--resume",
     "--resume $PWD/exps/nostudy: the search's Optuna study 'nostudy' is not in "
     "sqlite:///$PWD/exps/nostudy/study.db (a search can only continue with its study)"),
    ("report-not-experiment", "experiment", "`report` of a directory that is no experiment",
     "report imgs", "report",
     "report 'imgs': not an experiment directory (no settings.json)"),
    ("report-truncated-settings", "experiment", "`report` of an experiment whose settings.json is cut short",
     "report exps/truncated", "settings.json",
     "$PWD/exps/truncated/settings.json: must be a JSON object of search settings, but it is not valid JSON "
     "(Unterminated string starting at: line 1 column 2 (char 1))"),
    ("report-ledger-loop", "experiment", "`report` of an experiment whose `ledger/` is a link to itself",
     "report exps/loop", "ledger",
     "'$PWD/exps/loop/ledger' cannot be read as the ledger (Too many levels of symbolic links); the ledger must be "
     "a directory of the experiment"),
    ("train-output-changed", "experiment", "`train` again on a finished `--output` with a changed config",
     "train --output run_done --set train.epochs=5", "--output",
     "--output '$PWD/run_done' holds a run with another config (train.epochs: 30 -> 5); the same config "
     "resumes it, a changed one needs another --output"),
    ("report-file", "experiment", "`report` of a file",
     "report typo.yaml", "report",
     "report 'typo.yaml' is a file; give a directory"),
    ("train-output-in-data", "experiment", "`train --output` inside the image folder it trains on",
     "train --set data.source=imagefolder --set data.path=imgs --output imgs/run", "--output",
     "--output '$PWD/imgs/run' lies inside data.path '$PWD/imgs'; an output must lie outside its input (it would "
     "be read back as data)"),
    ("experiment-in-data", "experiment", "an experiment inside the image folder it searches on",
     "search spaces/ok.yaml --storage-path imgs --target-accuracy 0.5 --set data.source=imagefolder "
     "--set data.path=imgs", "data.path",
     "the experiment '$PWD/imgs/ok' lies inside data.path '$PWD/imgs'; an output must lie outside its input (it "
     "would be read back as data)"),
    ("train-output-foreign", "experiment", "`train --output` into a non-empty directory that is no run",
     "train --output imgs", "--output",
     "--output '$PWD/imgs' is not empty and holds no `simmim-ray train` run (no config.yaml); give a new or "
     "empty directory"),
]

STORAGE = [
    # ---- storage ---------------------------------------------------------------------------------------------
    ("storage-scheme", "storage", "storage URI with an unknown scheme",
     "search spaces/ok.yaml --storage-path foo://x --target-accuracy 0.5", "--storage-path",
     "--storage-path 'foo://x': scheme 'foo://' is not supported; use a local path, file://, s3:// or gs://"),
    ("storage-no-bucket", "storage", "`s3://` without a bucket",
     "search spaces/ok.yaml --storage-path s3:// --target-accuracy 0.5", "--storage-path",
     "--storage-path 's3://' names no bucket: use s3://BUCKET/PREFIX"),
    ("storage-credentials", "storage", "credentials in the storage URI",
     "search spaces/ok.yaml --storage-path 's3://b/x?access_key=AK&secret_key=SK' --target-accuracy 0.5",
     "--storage-path",
     "--storage-path 's3://b/x?access_key=AK&secret_key=SK' carries credentials (access_key, secret_key): set "
     "them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or use an instance role"),
    ("storage-file-host", "storage", "`file://` URI with a host",
     "search spaces/ok.yaml --storage-path file://nas/x --target-accuracy 0.5", "--storage-path",
     "--storage-path 'file://nas/x': file:// URIs name a local path (file:///abs/path), not a host 'nas'"),
    ("storage-s3-option", "storage", "S3 URI with an option pyarrow does not know",
     "search spaces/ok.yaml --storage-path 's3://b/x?region_name=eu' --target-accuracy 0.5", "--storage-path",
     "--storage-path 's3://b/x?region_name=eu': pyarrow cannot open it: Unexpected query parameter in S3 URI: "
     "'region_name'"),
    ("resume-scheme", "storage", "`--resume` of a URI with an unknown scheme",
     "search --resume foo://x/exp", "--resume",
     "--resume 'foo://x/exp': scheme 'foo://' is not supported; use a local path, file://, s3:// or gs://"),
    ("study-url-dialect", "storage", "bad Optuna `--study-db` URL (unknown database)",
     f"{S} --study-db notadb://x", "--study-db",
     "--study-db 'notadb://x': cannot open the Optuna database: Can't load plugin: sqlalchemy.dialects:notadb"),
    ("study-url-path", "storage", "Optuna `--study-db` SQLite file in a missing directory",
     f"{S} --study-db sqlite:////no/such/dir/study.db", "--study-db",
     "--study-db 'sqlite:////no/such/dir/study.db': cannot open the Optuna database: "
     "(sqlite3.OperationalError) unable to open database file"),
    ("study-url-password", "storage", "password in the `--study-db` URL, database unreachable: shown as `***`",
     f"{S} --study-db postgresql://u:SECRET@127.0.0.1:1/db", "--study-db",
     "--study-db 'postgresql://u:***@127.0.0.1:1/db': cannot open the Optuna database: nothing accepts "
     "connections at 127.0.0.1:1 (is the database server running, and is this its host and port?)"),
    ("study-url-no-driver", "storage", "`--study-db` URL whose database driver is not installed: named, with "
     "what to install", f"{S} --study-db postgresql+psycopg2://u:SECRET@127.0.0.1:1/db", "--study-db",
     "--study-db 'postgresql+psycopg2://u:***@127.0.0.1:1/db': cannot open the Optuna database: its driver module "
     "'psycopg2' is not installed; install it: pip install 'psycopg2-binary'"),
    ("study-url-raw-at", "storage", "`--study-db` password holding a raw `@`",
     f"{S} --study-db 'postgresql://u:p@ss@127.0.0.1:1/db'", "--study-db",
     "--study-db 'postgresql://u:***@127.0.0.1:1/db': a password must be percent-encoded ('@' as %40, ':' as %3A, "
     "'/' as %2F, '%' as %25), but this URL holds a second '@' after it"),
    ("output-is-file", "storage", "`train --output` that is a file",
     "train --output typo.yaml", "--output",
     "--output '$PWD/typo.yaml' is a file; give a directory"),
    ("storage-path-under-file", "storage", "`--storage-path` under a file",
     "search spaces/ok.yaml --storage-path typo.yaml/exps --target-accuracy 0.5", "--storage-path",
     "--storage-path '$PWD/typo.yaml/exps' lies under '$PWD/typo.yaml', which is a file; give a directory"),
    ("convert-out-file", "storage", "`convert` OUT that is a file",
     "convert imgs typo.yaml --from imagefolder", "convert OUT",
     "convert OUT 'typo.yaml' is a file; give a directory"),
    ("convert-out-in-src", "storage", "`convert` OUT inside SRC (the shards would become a class)",
     "convert imgs imgs/pq --from imagefolder", "convert OUT",
     "convert OUT 'imgs/pq' lies inside convert SRC 'imgs'; an output must lie outside its input (it would be "
     "read back as data)"),
    ("convert-out-is-src", "storage", "`convert` OUT equal to SRC",
     "convert imgs imgs --from imagefolder", "convert OUT",
     "convert OUT 'imgs' and convert SRC 'imgs' are the same directory; an output must lie outside its input"),
    ("convert-out-not-empty", "storage", "`convert` OUT that is not empty",
     "convert imgs run_done --from imagefolder", "convert OUT",
     "convert OUT 'run_done' is not empty (it holds 'config.yaml'); give an empty or new directory"),
    ("convert-empty-classes", "storage", "`convert` of an image folder with empty class folders",
     "convert imgs_gaps out --from imagefolder", "convert SRC",
     "convert SRC 'imgs_gaps': 3 class folder(s) hold no image file (first: 'empty_0'); every class needs images "
     "(.jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff, .webp)"),
    ("study-db-directory", "storage", "`--study-db` SQLite file that is a directory",
     f"{S} --study-db sqlite:///empty_dir", "--study-db",
     "--study-db 'sqlite:///empty_dir' is a directory; give a file"),
]
