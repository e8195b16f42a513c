"""Writing sample data files atomically (the sample generators' CSVs and picture folders)."""

import csv
import os
from typing import Dict, List, Sequence


def write_csv(path: str, columns: Sequence[str], rows: List[Dict]) -> None:
    """A UTF-8 CSV with a header, only `columns` of each row, written under a temporary name and renamed."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def write_jpegs(directory: str, pictures: Dict[str, bytes]) -> None:
    """`<name>.jpg` for each picture, each written under a temporary name and renamed, in name order."""
    os.makedirs(directory, exist_ok=True)
    for name in sorted(pictures):
        path = os.path.join(directory, name + ".jpg")
        with open(path + ".tmp", "wb") as f:
            f.write(pictures[name])
        os.replace(path + ".tmp", path)
