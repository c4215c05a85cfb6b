"""Print the headline card measurements of two toy checkpoints side by side (ship.compare_cards's rows).

PYTHONPATH=. python notes/toy_compare.py OLD_DIR NEW_DIR
"""

from __future__ import annotations

import sys

from mi_catalog.toy import read_card
from mi_catalog.toy.ship import compare_cards

old, new = read_card(sys.argv[1]), read_card(sys.argv[2])
assert old is not None and new is not None, "both folders need a card.json (train without --no-card)"
for row in compare_cards(old, new)["rows"]:
    print(f"| {row['what']} | {row['before']} | {row['now']} |")
for key in ("accuracy_by_kind", "retained_accuracies"):
    print(key, new.get(key))
mech = new["mechanisms"]
print("refusal by layer", mech["refusal_direction"]["by_layer"])
print("persona", mech["persona_steering"]["induced_rate_by_layer"], "best", mech["persona_steering"]["best_layer"])
print("bias baseline", mech["planted_bias"]["baseline"], "best", mech["planted_bias"]["best_layer"])
print("training", {k: new["training"].get(k) for k in ("steps", "train_seconds", "final_loss")})
