# ctest "install": installs the build tree into a fresh prefix, builds the consumer
# project against it with find_package(sattn), runs both of its programs, and runs the
# installed bin/sattn with LD_LIBRARY_PATH unset.
#   cmake -DBUILD=<build dir> -DSRC=<source dir> -DWORK=<scratch dir> -DCC=<compiler> -P check.cmake
file(REMOVE_RECURSE "${WORK}")
set(prefix "${WORK}/prefix")
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()
run(${CMAKE_COMMAND} --install "${BUILD}" --prefix "${prefix}")
run(${CMAKE_COMMAND} -S "${SRC}/tests/install/consumer" -B "${WORK}/consumer" -DCMAKE_PREFIX_PATH=${prefix}
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=${CC})
run(${CMAKE_COMMAND} --build "${WORK}/consumer")
set(ENV{LD_LIBRARY_PATH} "")
foreach(prog consumer consumer_static)
  run("${WORK}/consumer/${prog}")
  if(NOT out MATCHES "out 1.5378")
    message(FATAL_ERROR "${prog} printed: ${out} (want out 1.537882)")
  endif()
  message(STATUS "${prog}: ${out}")
endforeach()
run("${prefix}/bin/sattn" --version)
message(STATUS "installed bin/sattn --version: ${out}")
file(REMOVE_RECURSE "${WORK}")
