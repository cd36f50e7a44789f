# check_kernel_coverage.py judged on made-up inputs: two kernels declared, one
# launched -> failure naming the other; both launched -> pass; a test that did
# not run -> skip (77). Run with -DSCRIPT= -DPYTHON= -DWORK=.
file(MAKE_DIRECTORY ${WORK})
file(WRITE ${WORK}/k.cu "// __global__ void in_a_comment(\n__global__ void __launch_bounds__(256)\n    first_kernel(int x) {}\ntemplate <int N>\n__global__ void second_kernel(float* y) {}\n")
file(WRITE ${WORK}/list.txt "Suite.\n  A\n  B\nParam/Case.\n  Run/0  # GetParam() = 1\n")
function(run_check log expected_rc expected_text)
  file(WRITE ${WORK}/log.txt "${log}")
  execute_process(COMMAND ${PYTHON} ${SCRIPT} --log ${WORK}/log.txt --test-list ${WORK}/list.txt ${WORK}/k.cu
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL expected_rc OR NOT "${out}${err}" MATCHES "${expected_text}")
    message(FATAL_ERROR "expected rc ${expected_rc} and '${expected_text}', got rc ${rc}:\n${out}${err}")
  endif()
endfunction()
set(all_tests "test Suite.A passed\ntest Suite.B failed\ntest Param/Case.Run/0 passed\n")
run_check("kernel first_kernel\n${all_tests}" 1 "never launched: second_kernel")
run_check("kernel first_kernel\nkernel second_kernel\n${all_tests}" 0 "2 of 2 kernels")
run_check("kernel first_kernel\ntest Suite.A passed\n" 77 "2 of 3 emulator tests did not run")
