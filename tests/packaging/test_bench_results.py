"""`python -m bench.run --only SECTIONS` merges its figures into bench/results.json instead of
replacing the file (a partial run must not wipe the other sections' figures), and
`python -m bench.readme_table` puts the FROST end-to-end figures in their own table."""

from __future__ import annotations

import json

from bench import readme_table
from bench.run import merge


def test_a_partial_run_merges_into_the_results(tmp_path):
    path = tmp_path / "results.json"
    assert merge(path, [{"name": "a", "value": 1}]) == [{"name": "a", "value": 1}]  # no file yet
    path.write_text(json.dumps([{"name": "keygen_2of3_s_2048", "value": 2.3, "unit": "s"},
                                {"name": "frost_bip340_key_create_2of3_ms", "value": 9.0, "unit": "ms"},
                                {"name": "bench_meta", "value": 900.0, "unit": "s"}]))
    got = merge(path, [{"name": "frost_bip340_key_create_2of3_ms", "value": 120.0, "unit": "ms"},
                       {"name": "frost_bip340_nonce_refill_per_s_2of3", "value": 30.0, "unit": "1/s"},
                       {"name": "bench_meta_frost_e2e", "value": 150.0, "unit": "s"}])
    assert [(f["name"], f["value"]) for f in got] == [
        ("keygen_2of3_s_2048", 2.3), ("frost_bip340_key_create_2of3_ms", 120.0), ("bench_meta", 900.0),
        ("frost_bip340_nonce_refill_per_s_2of3", 30.0), ("bench_meta_frost_e2e", 150.0)]


def test_the_readme_table_separates_frost_over_https_from_in_memory(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps([
        {"name": "frost_bip340_sign_2of3_p50_ms", "value": 2.7, "unit": "ms"},
        {"name": "frost_bip340_sign_pooled_2of3_p50_ms", "value": 90.0, "unit": "ms", "runs": 7, "min": 80.0,
         "max": 120.0},
        {"name": "bench_meta_frost_e2e", "value": 150.0, "unit": "s"}]))
    readme_table.main(path)
    out = capsys.readouterr().out
    https, memory = out.split("**FROST in memory")
    assert "**FROST end to end over HTTPS" in https and "`frost_bip340_sign_pooled_2of3_p50_ms` | 90.0 (80.0 to 120.0, 7 runs)" in https
    assert "`frost_bip340_sign_2of3_p50_ms` | 2.7" in memory and "pooled" not in memory
    assert "bench_meta" not in out
