# Builds one translation unit per header under LIB/internal/, from outside
# the library (the repository root on the include path, as every target
# has, but without the library's access definition), and fails unless every
# one of them is refused by the header's own #error. With -DACCESS=MACRO the
# same headers must preprocess past that guard (the allowed targets can
# include them).
# Usage: cmake -DROOT=<repository> -DLIB=store|scoring -DCXX=<compiler>
#              -DDEFINE=<access macro> [-DINCLUDES=a;b] -P check_private_headers.cmake
foreach(var ROOT LIB CXX DEFINE)
  if(NOT ${var})
    message(FATAL_ERROR "check_private_headers.cmake: pass -D${var}=...")
  endif()
endforeach()
file(GLOB headers RELATIVE ${ROOT} ${ROOT}/${LIB}/internal/*.h)
if(NOT headers)
  message(FATAL_ERROR "no headers under ${ROOT}/${LIB}/internal")
endif()
set(include_flags -I${ROOT})
foreach(dir ${INCLUDES})
  list(APPEND include_flags -I${dir})
endforeach()
set(refusal "${LIB}/internal/ is private to embsum::${LIB}")
set(compiled "")
set(blocked_with_access "")
foreach(header ${headers})
  set(tu "#include \"${header}\"\nint main() { return 0; }\n")
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/private_header_probe_${LIB}.cc "${tu}")
  execute_process(
    COMMAND ${CXX} -std=c++20 -fsyntax-only -Wfatal-errors ${include_flags}
            ${CMAKE_CURRENT_BINARY_DIR}/private_header_probe_${LIB}.cc
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  # Refused by its own guard, not only by an internal header it includes.
  string(REPLACE "." "[.]" header_re "${header}")
  if(rc EQUAL 0 OR NOT err MATCHES "${header_re}:[0-9]+:[0-9]+: (fatal )?error: (#error )?\"${refusal}")
    string(APPEND compiled "\n  ${header}")
  endif()
  execute_process(
    COMMAND ${CXX} -std=c++20 -E -D${DEFINE} ${include_flags}
            ${CMAKE_CURRENT_BINARY_DIR}/private_header_probe_${LIB}.cc
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(err MATCHES "${refusal}")
    string(APPEND blocked_with_access "\n  ${header}")
  endif()
endforeach()
if(compiled)
  message(FATAL_ERROR "${LIB}/internal/ headers that a translation unit "
          "outside embsum::${LIB} can include (each needs the guard "
          "'#ifndef ${DEFINE} / #error \"${refusal}...\"'):${compiled}")
endif()
if(blocked_with_access)
  message(FATAL_ERROR "headers refused even with -D${DEFINE}:"
          "${blocked_with_access}")
endif()
list(LENGTH headers n)
message(STATUS "${LIB}/internal: all ${n} headers refused outside the library")
