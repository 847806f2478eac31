# Writes OUT as one line, #define SLUICE_COMMIT "<short commit of SRC's HEAD>" ("unknown"
# outside a checkout), and only when that line changes: it runs at every build (the commit
# moves without a reconfigure) and rebuilds version.cc only when the commit moved.
execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY ${SRC}
  OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT commit)
  set(commit unknown)
endif()
set(line "#define SLUICE_COMMIT \"${commit}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${line}")
  file(WRITE ${OUT} "${line}")
endif()
