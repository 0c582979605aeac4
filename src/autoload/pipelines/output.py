"""Pipeline results as JSON-ready values and as short human-readable text (for `autoload run`)."""

from __future__ import annotations

import json


def to_jsonable(value):
    """Tensors, numpy values and tuples -> plain lists and numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {key: to_jsonable(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def to_json(value) -> str:
    return json.dumps(to_jsonable(value), ensure_ascii=False)


def describe(task: str, result) -> str:
    """One input's result as a few aligned lines."""
    result = to_jsonable(result)
    if task == "fill-mask":
        masks = result if result and isinstance(result[0], list) else [result]
        lines = []
        for number, candidates in enumerate(masks, 1):
            if len(masks) > 1:
                lines.append(f"mask {number}:")
            lines += [f"  {c['score']:.4f}  {c['token_str']}  {c['sequence']}" for c in candidates]
        return "\n".join(lines)
    if task == "text-classification":
        labels = result if isinstance(result, list) else [result]
        return "\n".join(f"  {entry['label']}  {entry['score']:.4f}" for entry in labels)
    if task == "token-classification":
        if not result:
            return "  (no entities)"
        return "\n".join(f"  {e.get('entity_group', e.get('entity'))}  {e['score']:.4f}  {e['word']}  "
                         f"[{e['start']}:{e['end']}]" for e in result)
    if task == "text-generation":
        return "\n".join(entry["generated_text"] if isinstance(entry.get("generated_text"), str)
                         else to_json(entry) for entry in result)
    if task == "zero-shot-classification":
        return "\n".join(f"  {label}  {score:.4f}" for label, score in zip(result["labels"], result["scores"]))
    if task == "feature-extraction":
        tokens = result[0] if result and isinstance(result[0], list) and isinstance(result[0][0], list) else result
        return f"  {len(tokens)} tokens x {len(tokens[0]) if tokens else 0} features (use --json for the values)"
    if task == "sentence-embeddings":
        norm = sum(x * x for x in result) ** 0.5
        head = ", ".join(f"{x:.4f}" for x in result[:4])
        return f"  {len(result)} dims, norm {norm:.4f}: [{head}, ...] (use --json for the values)"
    return to_json(result)
