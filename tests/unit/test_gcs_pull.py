"""Unit tests for the gcs_rsync helpers: gs:// URL rules, include/exclude globs, output parsing."""

from __future__ import annotations

import fnmatch
import re
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plugins" / "module_utils"))

import gcs_rsync_common as g  # noqa: E402


# ---- URLs -----------------------------------------------------------------------------------
def test_role_assert_uses_the_module_regex():
    role_vars = yaml.safe_load((REPO / "roles/gcs_pull/vars/main.yml").read_text())
    assert role_vars["__gcs_pull_url_regex"] == g.GS_URL_REGEX


@pytest.mark.parametrize("url", [
    "gs://my-bucket", "gs://my-bucket/", "gs://my_bucket/data/train", "gs://a.b.c/x y/z",
    "gs://abc", "gs://" + "a" * 63, "gs://" + ".".join(["a" * 63] * 3) + "/p",
    "gs://bucket/prefix/with/ünïcode",
])
def test_good_urls(url):
    assert g.url_problem(url) is None
    assert re.match(g.GS_URL_REGEX, url)


@pytest.mark.parametrize("url,why", [
    ("", "empty"), ("s3://bucket/x", "gs://"), ("gs:/bucket", "gs://"), ("gs://", "no bucket"),
    ("gs://ab", "characters (3-63"), ("gs://Bad_Bucket", "lowercase"), ("gs://-abc", "start and end"),
    ("gs://abc-", "start and end"), ("gs://" + "a" * 64, "longer than 63"), ("gs://a..b", "empty"),
    ("gs://192.168.1.1", "IP address"), ("gs://goog-data", "goog"), ("gs://my-google-data", "google"),
    ("gs://bucket/data/*.csv", "wildcard"), ("gs://bucket/a\nb", "line break"),
    ("gs://bucket/" + "x" * 1025, "1024 bytes"),
])
def test_bad_urls_say_why(url, why):
    problem = g.url_problem(url)
    assert problem and why in problem
    if why != "1024 bytes":  # a byte limit is beyond a regex over characters: the module checks it
        assert not re.match(g.GS_URL_REGEX, url)


_bucket_part = st.from_regex(r"[a-z0-9]([a-z0-9_-]{0,20}[a-z0-9])?", fullmatch=True)
_prefix = st.text(st.characters(blacklist_characters="\r\n*?[]", blacklist_categories=("Cs",)), max_size=40)


@given(st.lists(_bucket_part, min_size=1, max_size=3), _prefix)
def test_regex_and_checker_agree(parts, prefix):
    url = "gs://" + ".".join(parts) + ("/" + prefix if prefix else "")
    assert (g.url_problem(url) is None) == bool(re.match(g.GS_URL_REGEX, url))


@given(st.text(max_size=60))
def test_checker_never_crashes_and_agrees_with_regex(text):
    for url in (text, "gs://" + text):
        assert (g.url_problem(url) is None) == bool(re.match(g.GS_URL_REGEX, url))


# ---- include / exclude ----------------------------------------------------------------------
def reference_match(pattern: str, path: str) -> bool:
    """Independent implementation: segment-wise fnmatch with ** and directory prefixes."""
    pat = pattern.strip("/")
    pat_parts = pat.split("/")
    anchored = "/" in pattern.rstrip("/")
    path_parts = path.split("/")

    def match(pp, xs):
        if not pp:
            return True  # the pattern named a directory: everything below it matches
        if pp[0] == "**":
            return any(match(pp[1:], xs[i:]) for i in range(len(xs) + 1)) if len(pp) > 1 else bool(xs)
        if not xs:
            return False
        return fnmatch.fnmatchcase(xs[0], pp[0]) and match(pp[1:], xs[1:])

    if anchored:
        return match(pat_parts, path_parts)
    return any(match(pat_parts, path_parts[i:]) for i in range(len(path_parts)))


@pytest.mark.parametrize("pattern,path,hit", [
    ("*.tmp", "a.tmp", True), ("*.tmp", "x/y/a.tmp", True), ("*.tmp", "a.tmpx", False),
    ("raw", "raw/a/b.bin", True), ("raw/", "raw/a", True), ("raw", "rawx/a", False),
    ("data/*.csv", "data/a.csv", True), ("data/*.csv", "x/data/a.csv", False),
    ("data/*.csv", "data/sub/a.csv", False), ("data/**/*.csv", "data/a.csv", True),
    ("data/**/*.csv", "data/s/t/a.csv", True), ("**/ckpt-?", "m/ckpt-1", True),
    ("[!a]*.bin", "b.bin", True), ("[!a]*.bin", "a.bin", False), ("a+b(1).txt", "a+b(1).txt", True),
])
def test_glob_examples(pattern, path, hit):
    assert (re.match("^(?:%s)$" % g.glob_to_regex(pattern), path) is not None) is hit


_seg = st.text(alphabet="ab.c-,", min_size=1, max_size=4)
_path = st.lists(_seg, min_size=1, max_size=4).map("/".join)
_pseg = st.one_of(_seg, st.just("*"), st.just("?"), st.just("*.c"), st.just("a*"), st.just("[ab]*"))
_pattern = st.one_of(
    st.lists(_pseg, min_size=1, max_size=3).map("/".join),
    st.lists(_pseg, min_size=1, max_size=2).map(lambda xs: "**/" + "/".join(xs)),
    st.lists(_pseg, min_size=2, max_size=3).map(lambda xs: xs[0] + "/**/" + "/".join(xs[1:])),
)


@settings(max_examples=400)
@given(_pattern, _path)
def test_glob_agrees_with_reference(pattern, path):
    got = re.match("^(?:%s)$" % g.glob_to_regex(pattern), path) is not None
    assert got == reference_match(pattern, path), (pattern, path, g.glob_to_regex(pattern))


@given(st.lists(_pattern, max_size=3), st.lists(_pattern, max_size=3), _path)
def test_exclusion_regex_semantics(include, exclude, path):
    regex = g.exclusion_regex(include, exclude)
    expected = any(reference_match(p, path) for p in exclude) or (
        bool(include) and not any(reference_match(p, path) for p in include))
    assert g.is_excluded(regex, path) == expected
    if regex:
        # gcloud reads "^X^..." as a custom delimiter and splits on ",": neither may appear.
        assert not regex.startswith("^") and "," not in regex


def test_no_patterns_no_regex():
    assert g.exclusion_regex([], []) is None


# ---- tool output ----------------------------------------------------------------------------
GSUTIL_OUT = (
    "Building synchronization state...\nStarting synchronization...\n"
    "Copying gs://bkt/data/f1.bin...\nCopying gs://bkt/data/sub/big.bin...\n"
    "/ [0/6 files][    0.0 B/  2.9 MiB]   0% Done                 \r"
    "/ [1/6 files][    1.3 MiB/  2.9 MiB]  45% Done     Copying gs://bkt/data/f 3.bin...\r"
    "Removing file://d1/extra\n"
    "/ [6/6 files][  2.9 MiB/  2.9 MiB] 100% Done\nOperation completed over 6 objects/2.9 MiB.\n"
)
GCLOUD_OUT = (
    "At gs://bkt/data/**, worker process 5481 thread 1 listed 6...\n"
    "Copying gs://bkt/data/f1.bin to file:///srv/d/f1.bin\n"
    "Copying gs://bkt/data/sub/big.bin to file:///srv/d/sub/big.bin\n  \n"
    "Removing file:///srv/d/extra...\n\nAverage throughput: 46.8MiB/s\n"
)
GCLOUD_DRY = (
    "Would remove file:///srv/d/extra\n"
    "Would copy gs://bkt/data/f1.bin#1795760887833901 to file:///srv/d/f1.bin\n"
)


def test_parse_gsutil():
    parsed = g.parse_rsync_output(GSUTIL_OUT, "gs://bkt/data", "d1")
    # A record written right after a progress bar, on the same line, still counts.
    assert parsed == {"copied": ["f1.bin", "sub/big.bin", "f 3.bin"], "deleted": ["extra"]}


def test_parse_gsutil_carriage_return_records():
    # The record after a progress bar redrawn with \r is still found.
    text = "/ [1/6 files] 45% Done\rCopying gs://bkt/data/x.bin...\r"
    assert g.parse_rsync_output(text, "gs://bkt/data/", "d")["copied"] == ["x.bin"]


def test_parse_gcloud_records_after_progress_dots():
    # gcloud prints a "." per finished chunk; the next record follows on the same line.
    text = "Copying gs://b/d/a.bin to file:///x/a.bin\n..Copying gs://b/d/c.bin to file:///x/c.bin\n.Removing file:///x/z...\n"
    assert g.parse_rsync_output(text, "gs://b/d", "/x") == {"copied": ["a.bin", "c.bin"], "deleted": ["z"]}


def test_parse_gcloud_and_dry_run():
    assert g.parse_rsync_output(GCLOUD_OUT, "gs://bkt/data", "/srv/d") == {
        "copied": ["f1.bin", "sub/big.bin"], "deleted": ["extra"]}
    assert g.parse_rsync_output(GCLOUD_DRY, "gs://bkt/data", "/srv/d/") == {
        "copied": ["f1.bin"], "deleted": ["extra"]}


def test_parse_bucket_root_and_noop():
    assert g.parse_rsync_output("Copying gs://bkt/a/b.txt...\n", "gs://bkt", "/x")["copied"] == ["a/b.txt"]
    assert g.parse_rsync_output("Building synchronization state...\nStarting synchronization...\n",
                                "gs://bkt", "/x") == {"copied": [], "deleted": []}


def test_retried_copy_counted_once():
    out = "Copying gs://b/p/a...\nCopying gs://b/p/a...\n"
    assert g.parse_rsync_output(out, "gs://b/p", "/x")["copied"] == ["a"]


@given(st.lists(st.text(alphabet="abc/._- ", min_size=1, max_size=12).filter(
    lambda s: not s.startswith("/") and not s.endswith("/") and "//" not in s and s.strip() == s), max_size=8))
def test_parse_roundtrip(names):
    text = "".join(f"Copying gs://bkt/pre/{n} to file:///dst/{n}\r\n" for n in names)
    assert g.parse_rsync_output(text, "gs://bkt/pre", "/dst")["copied"] == list(dict.fromkeys(names))


@pytest.mark.parametrize("text,kind", [
    ("BucketNotFoundException: 404 gs://nobkt bucket does not exist.", "missing_bucket"),
    ("ERROR: (gcloud.storage.rsync) gs://nobkt not found: 404.", "missing_bucket"),
    ("CommandException: arg (gs://bkt/nodata) does not name a directory, bucket, or bucket subdir.", "missing_prefix"),
    ("ERROR: (gcloud.storage.rsync) Did not find existing container at: gs://bkt/nodata", "missing_prefix"),
    ("AccessDeniedException: 403 sa@p.iam.gserviceaccount.com does not have storage.objects.list access "
     "to the Google Cloud Storage bucket.", "permission"),
    ("ERROR: (gcloud.storage.rsync) HTTPError 403: sa@p.iam.gserviceaccount.com does not have "
     "storage.objects.list access to the Google Cloud Storage bucket. Permission 'storage.objects.list' "
     "denied on resource (or it may not exist).", "permission"),
    ("md5 signature computed for local file (b'FSDD==') doesn't match cloud-supplied digest (b'eQi7==')."
     " Local file (d1/f2.bin) will be deleted.", "checksum"),
    ("ERROR: Source hash eQi7== does not match destination hash FSDD== for object d2/f2.bin_.gstmp.", "checksum"),
    ("OSError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", "tls"),
    ("something else entirely", "unknown"),
])
def test_classify_error(text, kind):
    assert g.classify_error(text)[0] == kind


def test_error_lines_pick_the_tools_words():
    out = ".ERROR: Source hash a does not match destination hash b for object x.\n\nAverage throughput: 1MiB/s\n"
    assert g.error_lines(out) == ["ERROR: Source hash a does not match destination hash b for object x."]


@pytest.mark.parametrize("n,text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (31457280, "30.0 MiB")])
def test_human_bytes(n, text):
    assert g.human_bytes(n) == text
