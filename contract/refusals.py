"""The gate's verdicts by name, and what each tells the user."""
from __future__ import annotations

ACCEPTED = "accepted"
ACCEPTED_DETAIL = "The photo passed the size, exposure, focus and dermoscopy checks."
# Refusals, in the order the gate checks them, with what the user can do about each.
DETAILS = {
    "too_small": "The photo is too small to read a lesion from. Send the camera's full-size photo, "
                 "not a thumbnail or a crop.",
    "too_dark": "The photo is too dark. Turn on the dermatoscope's light or move to a brighter "
                "place, and take it again.",
    "too_bright": "The photo is too bright or washed out. Avoid the flash and direct sunlight, "
                  "and take it again.",
    "blurred": "The photo is blurred or shows no detail. Hold the dermatoscope in contact with the "
               "skin, tap the lesion to focus, and take it again.",
    "not_dermoscopy": "This does not look like a dermoscopy photo of a skin lesion. Photograph one "
                      "lesion through a dermatoscope, the lesion centred and filling most of the frame.",
    # Not a judgement on the photo: the check itself failed, and a refusal is the safe answer.
    "gate_error": "The photo could not be checked. Try again, or take another photo.",
}
REFUSALS = tuple(DETAILS)
REASONS = (ACCEPTED, *REFUSALS)
