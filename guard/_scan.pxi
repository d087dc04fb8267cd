# Term scanning (filled in by the filtering core).
