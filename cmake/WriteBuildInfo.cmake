# Script mode (cmake -P), run on every build: writes keel/common/build_info.h with the current
# git commit. configure_file leaves the file untouched when nothing changed, so an unchanged
# commit triggers no rebuild.
execute_process(COMMAND git -C ${SOURCE_DIR} rev-parse --short=12 HEAD
                OUTPUT_VARIABLE KEEL_GIT_COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT KEEL_GIT_COMMIT)
  set(KEEL_GIT_COMMIT "unknown")
endif()
execute_process(COMMAND git -C ${SOURCE_DIR} status --porcelain --untracked-files=no
                OUTPUT_VARIABLE _dirty ERROR_QUIET)
if(_dirty)
  string(APPEND KEEL_GIT_COMMIT "-dirty")
endif()
configure_file(${INPUT} ${OUTPUT} @ONLY)
