# Portion-mark recognition (filled in by the markings engine).
