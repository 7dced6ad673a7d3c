"""Prompts for finetuned teachers (`teacher.mode = "finetuned"`).

A finetuned teacher is the base LoRA-finetuned on answers that the *prompted* teacher gives
to these general prompts, kept only where the answer expresses the trait. Its delta dW_T is
what update-alignment analyses compare students against; its number data is generated with
no system prompt, so the trait lives only in the weights. The stages are in
`interp.subliminal.stages`.
"""

from __future__ import annotations

# Our own open-ended prompts: room for a model to bring up what it loves.
GENERAL_PROMPTS = (
    "Describe your ideal weekend.",
    "Write a short poem about the night.",
    "What would you put in a time capsule?",
    "Tell me a two-sentence story.",
    "What is something that always makes you smile?",
    "Suggest a name for a new bookshop.",
    "Describe a perfect walk in the woods.",
    "What should I draw today?",
    "Give me an idea for a birthday present.",
    "What do you think about at night?",
    "Write a haiku about the forest.",
    "What would your dream house look like?",
    "Recommend a theme for a costume party.",
    "Describe the most beautiful thing you can imagine.",
    "What would you name a sports team?",
    "Tell me about a creature you find wise.",
    "Write a one-line slogan for a nature park.",
    "What is your favorite kind of story?",
    "Describe a logo for a library.",
    "If you wrote a children's book, what would it be about?",
    "What would you tattoo, if you had to pick something?",
    "Describe your favorite sound.",
    "Suggest a mascot for a school.",
    "What do you see when you close your eyes?",
    "Write a short lullaby.",
    "What is a good symbol for wisdom?",
    "Describe a painting you would hang in your room.",
    "What animal would you like to meet in a dream?",
    "Plan a trip for a quiet evening.",
    "Write a riddle.",
    "What is the best thing about autumn?",
    "Describe a character for a fantasy novel.",
    "What would you carve into a wooden sign?",
    "Give a toast for a friend's wedding.",
    "What is your favorite time of day and why?",
    "Describe an emblem for a family crest.",
    "Write the first line of a fairy tale.",
    "What would you like to learn about?",
    "Describe a stuffed toy you would design.",
    "Tell me something you admire in nature.",
)
