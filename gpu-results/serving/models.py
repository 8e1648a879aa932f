# SPDX-License-Identifier: Apache-2.0
"""The model the serving harness runs: Qwen3-30B-A3B's shapes (48 layers,
hidden 2048, 128 experts, top-8, moe_intermediate_size 768, 32 query and 4
KV heads of 128), no weights (vLLM's load_format="dummy"), and a word-level
tokenizer made here: token i is the word "t<i>", so a prompt of N words is
N tokens and every id the model emits decodes. The vocabulary is 32000
rather than Qwen3's 151936 (it only sizes the embedding and the LM head).

    python models.py DEST [--experts N] [--layers L]   # DEST/config.json, tokenizer
"""

import argparse
import json
from pathlib import Path

VOCAB = 32000

QWEN3_30B_A3B = {
    "architectures": ["Qwen3MoeForCausalLM"],
    "model_type": "qwen3_moe",
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "num_hidden_layers": 48,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "norm_topk_prob": True,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "hidden_act": "silu",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "rope_scaling": None,
    "max_position_embeddings": 40960,
    "max_window_layers": 48,
    "sliding_window": None,
    "use_sliding_window": False,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
    "router_aux_loss_coef": 0.001,
    "output_router_logits": False,
    "use_cache": True,
    "torch_dtype": "bfloat16",
    "vocab_size": VOCAB,
    "bos_token_id": 0,
    "eos_token_id": 1,
}


def write_tokenizer(dest: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<bos>": 0, "<eos>": 1, "<unk>": 2}
    vocab.update({f"t{i}": i for i in range(3, VOCAB)})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer.save(str(dest / "tokenizer.json"))
    (dest / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>",
        "model_max_length": 40960,
    }))  # fmt: skip


def write_model(dest: Path, experts: int = 128, layers: int = 48) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    config = {**QWEN3_30B_A3B, "num_experts": experts, "num_hidden_layers": layers}
    config["max_window_layers"] = layers
    (dest / "config.json").write_text(json.dumps(config, indent=1))
    (dest / "generation_config.json").write_text(json.dumps({"eos_token_id": 1}))
    write_tokenizer(dest)
    return dest


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("dest", type=Path)
    parser.add_argument("--experts", type=int, default=128)
    parser.add_argument("--layers", type=int, default=48)
    args = parser.parse_args()
    print(write_model(args.dest, args.experts, args.layers))
