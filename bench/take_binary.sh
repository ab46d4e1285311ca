# Sourced by the bench scripts whose first argument is the specontext binary.
# take_binary SCRIPT USAGE "$@": exits 2 with USAGE when there is no argument or the first is not an
# executable; else sets bin to it (the caller then shifts it off).
take_binary() {
  local script=$1 usage=$2
  shift 2
  [ $# -ge 1 ] || { echo "$script: $usage" >&2; exit 2; }
  [ -x "$1" ] || { echo "$script: '$1' is not an executable ($usage)" >&2; exit 2; }
  bin=$1
}
