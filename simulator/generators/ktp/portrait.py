"""Procedural passport-style portraits for synthetic cards: drawn shapes, never a photo of anyone.

Each portrait varies with its seed: skin tone, face shape, hair or hijab, eyes, brows, mouth, glasses.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

# e-KTP photos have a red background for odd birth years and blue for even ones.
BACKGROUNDS = {"red": (196, 38, 44), "blue": (38, 84, 170)}
SKIN_TONES = (
    (241, 204, 170),
    (226, 180, 140),
    (210, 160, 120),
    (192, 140, 100),
    (170, 118, 82),
    (140, 96, 64),
)
HAIR_COLOURS = ((22, 18, 16), (38, 28, 22), (58, 40, 28), (30, 30, 34), (120, 120, 120))
HIJAB_COLOURS = ((250, 250, 250), (20, 20, 24), (120, 30, 60), (40, 60, 110), (150, 120, 90), (60, 100, 80))
SHIRT_COLOURS = ((250, 250, 250), (30, 30, 36), (60, 80, 130), (120, 40, 40), (90, 90, 96), (200, 190, 170))


def draw_portrait(
    size: tuple[int, int], gender: str, background: str, rng: np.random.Generator
) -> Image.Image:
    """A head-and-shoulders drawing of ``size`` (w, h) on the card's red or blue photo background."""
    w, h = size
    image = Image.new("RGB", size, BACKGROUNDS.get(background, BACKGROUNDS["red"]))
    draw = ImageDraw.Draw(image)
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731 - tiny local chooser
    skin = pick(SKIN_TONES)
    female = gender.upper().startswith("P")
    hijab = female and rng.random() < 0.6

    cx = w * (0.5 + rng.uniform(-0.03, 0.03))
    face_w = w * rng.uniform(0.40, 0.50)
    face_h = face_w * rng.uniform(1.22, 1.42)
    face_top = h * rng.uniform(0.17, 0.24)
    face = (cx - face_w / 2, face_top, cx + face_w / 2, face_top + face_h)
    chin_y = face[3]

    # Shoulders and shirt (a collar for some).
    shirt = pick(SHIRT_COLOURS)
    shoulder_w = w * rng.uniform(0.88, 1.05)
    draw.ellipse((cx - shoulder_w / 2, chin_y + h * 0.05, cx + shoulder_w / 2, h * 1.55), fill=shirt)
    if hijab:
        cloth = pick(HIJAB_COLOURS)
        # The hijab drapes from above the head to the shoulders; the face shows through an oval.
        draw.ellipse(
            (cx - face_w * 0.82, face_top - face_h * 0.22, cx + face_w * 0.82, chin_y + face_h * 0.25),
            fill=cloth,
        )
        draw.polygon(
            [
                (cx - face_w * 0.8, chin_y - face_h * 0.2),
                (cx + face_w * 0.8, chin_y - face_h * 0.2),
                (cx + shoulder_w * 0.45, h),
                (cx - shoulder_w * 0.45, h),
            ],
            fill=cloth,
        )
    else:
        neck_w = face_w * 0.42
        draw.rectangle(
            (cx - neck_w / 2, chin_y - face_h * 0.15, cx + neck_w / 2, chin_y + h * 0.08), fill=skin
        )
        if shirt == (250, 250, 250) or rng.random() < 0.4:
            collar = (40, 40, 44) if shirt == (250, 250, 250) else (245, 245, 245)
            draw.polygon(
                [
                    (cx, chin_y + h * 0.13),
                    (cx - neck_w, chin_y + h * 0.05),
                    (cx - neck_w * 0.9, chin_y + h * 0.16),
                ],
                fill=collar,
            )
            draw.polygon(
                [
                    (cx, chin_y + h * 0.13),
                    (cx + neck_w, chin_y + h * 0.05),
                    (cx + neck_w * 0.9, chin_y + h * 0.16),
                ],
                fill=collar,
            )
        # Ears.
        ear_h = face_h * 0.2
        for side in (-1, 1):
            ex = cx + side * face_w / 2
            draw.ellipse(
                (
                    ex - face_w * 0.07,
                    face_top + face_h * 0.38,
                    ex + face_w * 0.07,
                    face_top + face_h * 0.38 + ear_h,
                ),
                fill=skin,
            )
    draw.ellipse(face, fill=skin)

    if not hijab:
        hair = pick(HAIR_COLOURS)
        style = int(rng.integers(4 if female else 3))
        top = face_top - face_h * rng.uniform(0.05, 0.14)
        if style == 0:  # short crop
            draw.chord((face[0] - 3, top, face[2] + 3, face_top + face_h * 0.6), 180, 360, fill=hair)
        elif style == 1:  # side parting with a fringe
            draw.chord((face[0] - 5, top, face[2] + 5, face_top + face_h * 0.75), 170, 370, fill=hair)
            draw.polygon(
                [
                    (face[0], face_top + face_h * 0.3),
                    (cx + face_w * 0.2, face_top + face_h * 0.08),
                    (face[0], face_top + face_h * 0.12),
                ],
                fill=hair,
            )
        elif style == 2:  # very short / receding
            draw.chord(
                (face[0] + 2, face_top - face_h * 0.03, face[2] - 2, face_top + face_h * 0.4),
                190,
                350,
                fill=hair,
            )
        else:  # long hair down to the shoulders
            draw.rectangle(
                (
                    face[0] - face_w * 0.12,
                    face_top + face_h * 0.3,
                    face[2] + face_w * 0.12,
                    chin_y + face_h * 0.25,
                ),
                fill=hair,
            )
            draw.chord(
                (face[0] - face_w * 0.12, top, face[2] + face_w * 0.12, face_top + face_h * 0.8),
                180,
                360,
                fill=hair,
            )
            draw.ellipse(
                (face[0] + face_w * 0.08, face_top + face_h * 0.18, face[2] - face_w * 0.08, chin_y),
                fill=skin,
            )

    # Features.
    eye_y = face_top + face_h * rng.uniform(0.42, 0.48)
    eye_dx = face_w * rng.uniform(0.19, 0.23)
    eye_r = face_w * rng.uniform(0.045, 0.06)
    brow = tuple(max(0, c - 120) for c in skin)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        draw.ellipse((ex - eye_r * 1.6, eye_y - eye_r, ex + eye_r * 1.6, eye_y + eye_r), fill=(245, 245, 240))
        draw.ellipse((ex - eye_r, eye_y - eye_r, ex + eye_r, eye_y + eye_r), fill=(40, 28, 20))
        brow_y = eye_y - face_h * rng.uniform(0.08, 0.11)
        draw.line(
            (ex - eye_r * 2, brow_y + 2, ex + eye_r * 2, brow_y - side * 0.0 - 1),
            fill=brow,
            width=max(2, int(eye_r * 0.7)),
        )
    nose_y = face_top + face_h * 0.64
    draw.line(
        (cx, eye_y + eye_r * 2, cx - face_w * 0.04, nose_y, cx + face_w * 0.04, nose_y),
        fill=tuple(max(0, c - 45) for c in skin),
        width=2,
    )
    mouth_y = face_top + face_h * rng.uniform(0.76, 0.81)
    mouth_w = face_w * rng.uniform(0.22, 0.32)
    lips = (min(255, skin[0] - 20), max(0, skin[1] - 70), max(0, skin[2] - 60))
    draw.arc(
        (cx - mouth_w / 2, mouth_y - face_h * 0.05, cx + mouth_w / 2, mouth_y + face_h * 0.04),
        15,
        165,
        fill=lips,
        width=3,
    )
    if not female and rng.random() < 0.25:  # moustache
        draw.line(
            (cx - mouth_w * 0.45, mouth_y - face_h * 0.04, cx + mouth_w * 0.45, mouth_y - face_h * 0.04),
            fill=HAIR_COLOURS[0],
            width=max(3, int(face_h * 0.03)),
        )
    if rng.random() < 0.18:  # glasses
        for side in (-1, 1):
            ex = cx + side * eye_dx
            draw.ellipse(
                (ex - eye_r * 2.6, eye_y - eye_r * 2, ex + eye_r * 2.6, eye_y + eye_r * 2),
                outline=(30, 30, 30),
                width=2,
            )
        draw.line(
            (cx - eye_dx + eye_r * 2.6, eye_y, cx + eye_dx - eye_r * 2.6, eye_y), fill=(30, 30, 30), width=2
        )
    return image
