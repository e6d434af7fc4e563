# Loads installer files into the test's shell with the globals a bundle's own part sets.
# shellcheck shell=bash

load_installer() {
  local part
  for part in "$@"; do
    # shellcheck source=/dev/null
    source "$BATS_TEST_DIRNAME/../../installer/$part.sh"
  done
  # As parse_args leaves them for --root: no host is touched.
  MEMBER=t
  ROLE=member
  root=""
  host=0
  dry_run=0
  pending=""
}

# A bundle folder with two files and their SHA256SUMS; the test runs inside it.
make_bundle() {
  mkdir -p "$BATS_TEST_TMPDIR/bundle/sub"
  cd "$BATS_TEST_TMPDIR/bundle"
  printf 'one\n' >a
  printf 'two\n' >sub/b
  sha256sum a sub/b >SHA256SUMS
}
