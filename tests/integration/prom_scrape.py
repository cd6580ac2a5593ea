#!/usr/bin/python3
"""Scrapes a Prometheus endpoint and parses it with the Prometheus client's
own text parser (python3-prometheus-client, Debian's: hence /usr/bin/python3,
not whatever python3 comes first on PATH), for test_metrics.c.

    prom_scrape.py URL

Prints one line per sample, `name{k=v,k=v} value` (labels sorted, `{}`
omitted when none), and exits 0; exits 1 with the reason on stderr when
the endpoint does not answer 200, the text does not parse, or a family
breaks the format's rules checked here (a TYPE for every family, samples
named after it, histogram buckets cumulative and ending at +Inf with
_count equal to it)."""
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main():
    url = sys.argv[1]
    with urllib.request.urlopen(url, timeout=5) as r:
        if r.status != 200:
            sys.exit(f"prom_scrape: {url}: HTTP {r.status}")
        ctype = r.headers.get("Content-Type", "")
        if not ctype.startswith("text/plain"):
            sys.exit(f"prom_scrape: {url}: Content-Type {ctype!r}")
        text = r.read().decode("utf-8")
    lines = []
    for fam in text_string_to_metric_families(text):
        if fam.type not in ("counter", "gauge", "histogram"):
            sys.exit(f"prom_scrape: {fam.name}: type {fam.type!r}")
        buckets = {}
        counts = {}
        for s in fam.samples:
            if not s.name.startswith(fam.name):
                sys.exit(f"prom_scrape: sample {s.name} outside family {fam.name}")
            labels = dict(s.labels)
            if fam.type == "histogram":
                key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
                if s.name.endswith("_bucket"):
                    buckets.setdefault(key, []).append((float(labels["le"]), s.value))
                elif s.name.endswith("_count"):
                    counts[key] = s.value
            lab = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            value = int(s.value) if float(s.value).is_integer() else s.value
            lines.append(f"{s.name}{{{lab}}} {value}" if lab else f"{s.name} {value}")
        for key, bs in buckets.items():
            les = [le for le, _ in bs]
            vals = [v for _, v in bs]
            if les != sorted(les) or les[-1] != float("inf"):
                sys.exit(f"prom_scrape: {fam.name}{key}: buckets out of order or no +Inf")
            if vals != sorted(vals) or counts.get(key) != vals[-1]:
                sys.exit(f"prom_scrape: {fam.name}{key}: buckets not cumulative or _count differs")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
