"""Plain numpy, loop-by-loop versions of core ops: readable teaching code and second oracles
for the vectorized implementations (floor 1: imports nothing from cvcraft but errors)."""
