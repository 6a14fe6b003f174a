"""What a GGUF vocabulary says about its tokens (``tokenizer.ggml.token_type``, llama.cpp's
llama_token_type), which tokenizer models pyrt rebuilds, and which tokens end a generation.

Kept free of the ``tokenizers`` import so that model_config can check a file's tokenizer before
anything heavy (weights, the vocabulary itself) is loaded."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

# llama.cpp token types (enum llama_token_type / gguf.TokenType)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# tokenizer.ggml.model values: "gpt2" is byte-level BPE with merges, "llama" is SentencePiece
# (merges ranked by the merged token's score, byte fallback through <0xNN> tokens).
BYTE_LEVEL_BPE, SENTENCEPIECE = "gpt2", "llama"
TOKENIZER_MODELS = (BYTE_LEVEL_BPE, SENTENCEPIECE)

# Token texts that end a generation whatever their type: llama.cpp's list (llama-vocab.cpp), with
# the fill-in-the-middle pad / repository / file-separator texts it also treats as such.
END_OF_GENERATION_TEXTS = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
    "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>"})
# Ids the file may name explicitly that also end a generation.
END_OF_GENERATION_KEYS = ("eos_token_id", "eot_token_id", "eom_token_id", "fim_pad_token_id", "fim_rep_token_id",
                          "fim_sep_token_id")


def end_of_generation_ids(tokens: Sequence[str], md: Mapping[str, Any]) -> set[int]:
    """The ids that end a generation: tokens whose text says so, and the special ids the metadata
    (keys without their ``tokenizer.ggml.`` prefix) names."""
    ids = {i for i, text in enumerate(tokens) if text in END_OF_GENERATION_TEXTS}
    for key in END_OF_GENERATION_KEYS:
        value = md.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(tokens):
            ids.add(value)
    return ids
