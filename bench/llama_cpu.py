"""llama.cpp tokens/s for one build of llama-cpp-python: prompt processing and generation, same model,
same prompt, greedy, N runs, medians. Compares the builds the persona image could use (bench/README.md,
"llama.cpp CPU variants").

    PYTHONPATH=DIR_WITH_A_LLAMA_CPP_BUILD .venv/bin/python bench/llama_cpu.py --label baseline \
        --model ~/.cache/wyoming-persona/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf

The build comes from whatever `llama_cpp` the interpreter imports (PYTHONPATH first), so one script
measures each build installed with `pip install --no-deps --target DIR WHEEL`. Prints one JSON line.
Not a test: timings depend on the machine and its load (run it on an otherwise idle machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

PROMPT = (
    "You are a helpful voice assistant in a smart home. Answer in two short sentences.\n"
    "The living room has a ceiling light, a floor lamp and a television. The kitchen has a light, "
    "a coffee maker and a window blind. The garage door is closed and the outside temperature is "
    "12 degrees. Question: which devices are in the kitchen, and is the garage open?\nAnswer:"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a GGUF file")
    parser.add_argument("--label", required=True, help="name of the build, for the output")
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import llama_cpp

    llama = llama_cpp.Llama(
        model_path=str(args.model),
        n_ctx=1024,
        n_threads=args.threads,
        n_batch=512,
        use_mmap=False,
        seed=1,
        verbose=False,
    )
    tokens = llama.tokenize(PROMPT.encode())
    prompt_rates, gen_rates = [], []
    for _ in range(args.runs):
        llama.reset()
        started = time.perf_counter()
        llama.eval(tokens)
        prompt_s = time.perf_counter() - started
        started = time.perf_counter()
        generated = 0
        for _ in llama.generate([], top_k=1, temp=0.0, reset=False):  # an end token does not stop it
            generated += 1
            if generated >= args.tokens:
                break
        gen_s = time.perf_counter() - started
        prompt_rates.append(len(tokens) / prompt_s)
        gen_rates.append(generated / gen_s)
    print(
        json.dumps(
            {
                "label": args.label,
                "llama_cpp": str(Path(llama_cpp.__file__).parent),
                "model": args.model.name,
                "threads": args.threads,
                "prompt_tokens": len(tokens),
                "prompt_tokens_per_s": round(statistics.median(prompt_rates), 1),
                "generated_tokens_per_s": round(statistics.median(gen_rates), 2),
                "runs": args.runs,
                "system_info": llama_cpp.llama_print_system_info().decode().strip(),
            }
        )
    )


if __name__ == "__main__":
    main()
