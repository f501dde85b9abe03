"""A spool: records parked in a temporary file between the two passes of a corpus-wide step.

Steps that must see every record before deciding any of them (near dedup, line dedup, split, mix)
keep only compact state in memory (hashes, band keys, labels as arrays) and park the records
themselves here, so `tailor data prepare` holds one record at a time whatever the corpus size.
Records are pickled, so what comes back is equal to what went in (meta types included). The file
lives in the temporary directory (TMPDIR) and is deleted when the spool is closed or collected.

    spool = Spool()
    for r in records:
        spool.append(r)
    for r in spool:  # the same records, in the same order
        ...
"""

import pickle
import tempfile
from array import array
from typing import Iterator

from tailorlm.data.record import Record


class Spool:
    def __init__(self):
        self._file = tempfile.TemporaryFile(prefix="tailor-spool-")
        self.offsets = array("q")  # where each record starts, for `get`

    def append(self, record: Record) -> int:
        """Park a record; returns its index."""
        self.offsets.append(self._file.tell())
        pickle.dump(record, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        return len(self.offsets) - 1

    def __len__(self) -> int:
        return len(self.offsets)

    def __iter__(self) -> Iterator[Record]:
        """Every record in the order appended; the spool may not grow while this runs."""
        self._file.flush()
        self._file.seek(0)
        for _ in range(len(self.offsets)):
            yield pickle.load(self._file)

    def get(self, index: int) -> Record:
        """One record by index (a seek and one read)."""
        self._file.flush()
        self._file.seek(self.offsets[index])
        return pickle.load(self._file)

    def close(self) -> None:
        self._file.close()
