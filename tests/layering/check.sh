#!/usr/bin/env bash
# The layering of the tree, checked on the objects (docs/architecture.md): what the compiler's
# per-folder include paths promise, the linker confirms. Two checks:
#  1. no object of a folder references a symbol defined in a folder it must not use (nm);
#  2. the cell side (common sandbox wire agent/tools agent, and main's dispatcher) links into a
#     program on its own, with no undefined symbol: the agent's code path has no key-holding
#     code (llm/), no task lifecycle (supervisor/), no daemon, batch or command code in it.
# Usage: tests/layering/check.sh BUILD_DIR CC "LDLIBS"
set -u
build=${1:-build} cc=${2:-cc} ldlibs=${3:-}
fail=0

# The folders each folder's objects may take symbols from (besides libc and the libraries).
declare -A may=(
  [common]="common"
  [sandbox]="common sandbox"
  [wire]="common sandbox wire"
  [agent/tools]="common agent/tools"
  [agent]="common sandbox wire agent/tools agent"
  [llm]="common llm"
  [egress]="common egress"
  [supervisor]="common sandbox wire agent/tools llm egress supervisor"
  [batch]="common sandbox wire batch"
)
all="common sandbox wire agent/tools agent llm egress supervisor batch daemon cli"

objs_of() { # the objects directly in folder $1 (not its subfolders)
  find "$build/$1" -maxdepth 1 -name '*.o' 2>/dev/null | sort
}
declare -A owner # symbol -> folder that defines it
for d in $all; do
  for o in $(objs_of "$d"); do
    while read -r sym; do owner[$sym]=$d; done < <(nm --defined-only -g "$o" | awk 'NF==3 && $2 !~ /[wWvV]/ {print $3}')
  done
done
[ ${#owner[@]} -gt 0 ] || { echo "layering: no objects under $build (build first)"; exit 1; }

for d in "${!may[@]}"; do
  for o in $(objs_of "$d"); do
    while read -r sym; do
      od=${owner[$sym]:-}
      [ -n "$od" ] || continue
      case " ${may[$d]} " in *" $od "*) ;; *)
        echo "layering: ${o#$build/} ($d) uses $sym from $od/"; fail=1;; esac
    done < <(nm -u "$o" | awk '{print $2}')
  done
done

# The cell side as a program of its own: main's dispatcher finds only `__agent` in it.
cell_objs="$build/cli/main.o"
for d in common sandbox wire agent/tools agent; do cell_objs="$cell_objs $(objs_of "$d" | tr '\n' ' ')"; done
# shellcheck disable=SC2086
if ! out=$($cc -o "$build/agentbox-cellside" $cell_objs $ldlibs 2>&1); then
  printf '%s\n' "$out" | head -20
  echo "layering: the cell-side objects do not link on their own"; fail=1
elif nm "$build/agentbox-cellside" | grep -qE ' [TDBR] (llm_|broker_|runner_|serve_|journal_|taskstore_|batch_)'; then
  echo "layering: key-holding or daemon code in the cell-side program"; fail=1
fi

if [ $fail -eq 0 ]; then echo "layering: ok (${#owner[@]} symbols in $(echo $all | wc -w) folders; cell side links alone)"; fi
exit $fail
