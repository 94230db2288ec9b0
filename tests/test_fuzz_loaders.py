"""A seeded fuzz run of the potential loaders (tests/fuzz_loaders.py): a few hundred mutants of
a small potential, ours, PACE .yace and pacemaker .yaml, each loaded in a worker subprocess with a
memory cap and a timeout. Every mutant loads or is refused with PotentialFileError /
PaceFormatError naming the file: no crash, hang, memory blow-up or other exception type.
The full run (>= 10^4 mutants) is ``python tests/fuzz_loaders.py``; its counts are in
tests/README.md.
"""
import fuzz_loaders


def test_fuzzed_potential_files_load_or_are_refused_cleanly():
    counts, failures = fuzz_loaders.run(240, seed=1000, batch=120)
    assert failures == []
    for fmt in fuzz_loaders.FORMATS:
        assert sum(counts[fmt].values()) == 80
        # the mutants reach both ends: some still load, most are refused
        assert counts[fmt]["refused"] > 40 and counts[fmt]["loaded"] > 0, counts


def test_the_fuzzer_reports_what_is_not_clean(tmp_path, monkeypatch):
    """The harness itself: a worker that dies or answers with another type is a failure."""
    texts = fuzz_loaders.seed_files()
    path = tmp_path / "raw.yaml"
    path.write_bytes(fuzz_loaders.mutant(texts, "ace", 1))
    monkeypatch.setattr(fuzz_loaders, "MEMORY_CAP", 64 * 2**20)  # too small to import numpy
    results = fuzz_loaders._run_batch([(0, "ace", 1, str(path))], timeout=5.0)
    assert results[0][0] in ("crash", "memory", "hang")
