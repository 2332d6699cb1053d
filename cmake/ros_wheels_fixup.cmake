# Loaded with -DCMAKE_PROJECT_INCLUDE=<this file> by the Makefile's ROS tier only
# (docs/ros.md); a normal `colcon build` on a ROS machine never reads it.
#
# Why: the ros-python-wheels message packages (std_msgs, sensor_msgs, …) export
# the include directories of the machine they were built on
# (/opt/python/cp311-cp311/include/python3.11 and its numpy) on their
# *__rosidl_generator_py targets; CMake refuses to generate with an imported
# target naming a path that does not exist.  At the end of configuring, every
# imported target's missing include directory is replaced by this
# interpreter's Python / numpy include directory.  On a real ROS install all
# those paths exist, so nothing changes.
cmake_minimum_required(VERSION 3.21)   # DIRECTORY property IMPORTED_TARGETS

function(_goodpoint_fix_wheel_include_dirs)
  if(NOT Python3_EXECUTABLE)
    return()
  endif()
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c
      "import sysconfig, numpy; print(sysconfig.get_paths()['include'] + ';' + numpy.get_include())"
    OUTPUT_VARIABLE _good_dirs OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    return()
  endif()
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  set(_fixed 0)
  foreach(_t IN LISTS _targets)
    get_target_property(_dirs ${_t} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_new "")
    set(_missing FALSE)
    foreach(_d IN LISTS _dirs)
      if(_d MATCHES "^\\$<" OR EXISTS "${_d}")
        list(APPEND _new "${_d}")
      else()
        set(_missing TRUE)
      endif()
    endforeach()
    if(_missing)
      list(APPEND _new ${_good_dirs})
      list(REMOVE_DUPLICATES _new)
      set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new}")
      math(EXPR _fixed "${_fixed} + 1")
    endif()
  endforeach()
  if(_fixed)
    message(STATUS "ros_wheels_fixup: replaced missing include dirs on ${_fixed} imported targets")
  endif()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _goodpoint_fix_wheel_include_dirs)
