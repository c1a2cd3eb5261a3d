"""The results.csv of a lab job: read to resume, appended one row at a time."""

import csv
import os


def read_rows(path, header):
    """Rows already in results.csv; raises if it belongs to another run."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != header:
            raise ValueError(
                f"{path} has the columns {reader.fieldnames}, not those of this "
                f"run ({header}). Pass another output folder (`--out`)."
            )
        return list(reader)


def append_row(path, header, row):
    """Appends one row (writing the header first) and flushes it to disk."""
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, restval="")
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())
