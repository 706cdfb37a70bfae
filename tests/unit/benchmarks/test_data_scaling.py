"""data_scaling's S3 rows (skipped by --quick, so CI's quick run never reaches them): the Parquet of each size lands
in moto's bucket and the train reads it from an s3:// URI, with the credentials in its environment."""
from __future__ import annotations

import pyarrow.fs as pafs

from benchmarks import data_scaling


def test_s3_rows_copy_each_size_into_the_bucket_and_train_from_its_uri(tmp_path, monkeypatch):
    paths = {}
    for rows in (4, 40):
        paths[rows] = str(tmp_path / f"pq_{rows}")
        data_scaling.write_parquet(paths[rows], rows, rows_per_file=4, px=8)
    seen = []

    def fake_train(uri: str, workdir: str, env: dict):
        fs, base = pafs.FileSystem.from_uri(uri)  # the process's env carries the server's credentials
        files = fs.get_file_info(pafs.FileSelector(base))
        seen.append((uri, len(files), env["AWS_ACCESS_KEY_ID"]))
        return {"driver": len(files)}, 0.0

    monkeypatch.setattr(data_scaling, "train_peaks", fake_train)
    small, large = data_scaling.s3_peaks(paths, 4, str(tmp_path), {})
    assert [s[0].split("?")[0] for s in seen] == ["s3://simmim-test/pq_4", "s3://simmim-test/pq_40"]
    assert (small, large) == ({"driver": 1}, {"driver": 10})  # every file of each size copied
    assert {s[2] for s in seen} == {"testing"}
