"""The strict rules of the OpenAI chat-completions request, as the strictest
OpenAI-compatible servers apply them, checked on one request body. Owns nothing but the
rules: problems(body) returns what a strict server would refuse (an empty list: none).
Stdlib only; used by tests/fake_openrouter.py ("strict": true) and the tests."""
import json

ROLES = ("system", "user", "assistant", "tool")


def _args_problem(args):
    if not isinstance(args, str) or not args:
        return "function.arguments must be a non-empty string"
    try:
        v = json.loads(args)
    except ValueError:
        return f"function.arguments is not valid JSON: {args[:80]!r}"
    if not isinstance(v, dict):
        return f"function.arguments is not a JSON object: {args[:80]!r}"
    return None


def _tools_problems(tools):
    out = []
    if not isinstance(tools, list) or not tools:
        return ["tools must be a non-empty array when present"]
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict):
            out.append(f"tools[{i}] must be {{type: function, function: {{...}}}}")
        elif not isinstance(fn.get("name"), str) or not fn["name"]:
            out.append(f"tools[{i}].function.name must be a non-empty string")
        elif "parameters" in fn and not isinstance(fn["parameters"], dict):
            out.append(f"tools[{i}].function.parameters must be an object")
    return out


def problems(body):
    """Every rule the request breaks (strings)."""
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    out = []
    if not isinstance(body.get("model"), str) or not body["model"]:
        out.append("model must be a non-empty string")
    if "max_tokens" in body and (not isinstance(body["max_tokens"], int) or body["max_tokens"] <= 0):
        out.append("max_tokens must be a positive integer")
    if "tools" in body:
        out += _tools_problems(body["tools"])
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return out + ["messages must be a non-empty array"]
    seen_ids = set()
    open_ids = []  # calls of the last assistant message not yet answered
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            out.append(f"{where}: role must be one of {ROLES}")
            continue
        role = m["role"]
        if role != "tool" and open_ids:
            out.append(f"{where}: tool calls {open_ids} were never answered")
            open_ids = []
        content = m.get("content")
        if role in ("system", "user") and not isinstance(content, (str, list)):
            out.append(f"{where}: {role} content must be a string")
        if role == "assistant":
            calls = m.get("tool_calls")
            if calls is not None and (not isinstance(calls, list) or not calls):
                out.append(f"{where}: tool_calls must be a non-empty array when present")
                calls = None
            if not calls and not isinstance(content, str):
                out.append(f"{where}: an assistant message needs content or tool_calls")
            if content is not None and not isinstance(content, str):
                out.append(f"{where}: assistant content must be a string or null")
            for j, tc in enumerate(calls or []):
                w = f"{where}.tool_calls[{j}]"
                if not isinstance(tc, dict):
                    out.append(f"{w} must be an object")
                    continue
                tid = tc.get("id")
                if not isinstance(tid, str) or not tid:
                    out.append(f"{w}.id must be a non-empty string")
                elif tid in seen_ids:
                    out.append(f"{w}.id {tid!r} is not unique in the conversation")
                else:
                    seen_ids.add(tid)
                    open_ids.append(tid)
                if tc.get("type") != "function":
                    out.append(f"{w}.type must be 'function'")
                fn = tc.get("function")
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                    out.append(f"{w}.function.name must be a non-empty string")
                    continue
                p = _args_problem(fn.get("arguments"))
                if p:
                    out.append(f"{w}.{p}")
        if role == "tool":
            tid = m.get("tool_call_id")
            if not isinstance(tid, str) or not tid:
                out.append(f"{where}: tool_call_id must be a non-empty string")
            elif tid not in open_ids:
                out.append(f"{where}: tool_call_id {tid!r} answers no earlier unanswered call")
            else:
                open_ids.remove(tid)
            if not isinstance(content, str):
                out.append(f"{where}: tool content must be a string")
    # calls of the last message may be open only if it is the last one (the model's turn)
    return out
