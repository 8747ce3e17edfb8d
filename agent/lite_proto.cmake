# cmake -DIN=proto/tandem.proto -DOUT=.../tandem.proto -P lite_proto.cmake
#
# Writes a copy of IN for protobuf's lite runtime: the same messages and
# services, on the wire byte for byte, without descriptors or reflection.
# The agent uses neither, and its resident memory drops by about 1 MiB
# (see agent/CMakeLists.txt).
file(READ "${IN}" text)
if(text MATCHES "optimize_for")
  message(FATAL_ERROR "${IN} sets optimize_for itself; agent/lite_proto.cmake expects it not to")
endif()
string(REGEX MATCH "\npackage [A-Za-z0-9_.]+;" package "${text}")
if(NOT package)
  message(FATAL_ERROR "${IN}: no package statement to put the lite option after")
endif()
string(REPLACE "${package}"
       "${package}\n// Added for the agent (agent/lite_proto.cmake).\noption optimize_for = LITE_RUNTIME;"
       text "${text}")
file(WRITE "${OUT}.tmp" "${text}")
file(RENAME "${OUT}.tmp" "${OUT}")
