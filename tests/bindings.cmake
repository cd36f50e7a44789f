# Tests of the language bindings and of the exported ABI (label "bindings"),
# included by tests/CMakeLists.txt. They need the library built first
# (`cmake --build <dir>`); ctest does not build.
#
#   bindings_rust_test      cargo test of bindings/rust (fwp-sys layout probe,
#                           fwp unit/integration/doc tests) against this build's libfwp
#   bindings_rust_doc       cargo doc with warnings as errors (every public item documented)
#   bindings_rust_example   the Rust retrieval example, a few hundred steps
#   bindings_rust_example_lm  the Rust language-model example on its generated corpus
#   bindings_rust_example_distributed  the Rust data-parallel example: 2 ranks as threads through the
#                                      callback hook (replicas equal, loss falls, else exit non-zero)
#   bindings_rust_example_translation  the Rust translation example (exits non-zero unless it
#                           translates its training sentences)
#   bindings_check          scripts/check_bindings.py: Rust and Julia declarations
#                           vs include/fwp/fwp.h (needs tree_sitter, tree_sitter_julia)
#   bindings_generated      scripts/gen_bindings.py --check: the checked-in raw
#                           declarations (fwp-sys src/generated.rs, LibFwp.jl) equal a
#                           fresh generation from the headers
#   bindings_abi            tests/abi_check.sh: libfwp exports exactly the fwp.h functions
#   bindings_example_layer_training   the C example examples/c/layer_training.c
#   bindings_example_translation      the C example examples/c/translation.c
#
# A missing tool (cargo, python3) is a failing test with the reason, not a
# silent skip; configure with -DFWP_TEST_BINDINGS=OFF to leave these tests out.
option(FWP_TEST_BINDINGS "Register the Rust/Julia binding and ABI tests" ON)

if(FWP_TEST_BINDINGS)
  get_filename_component(FWP_SOURCE_ROOT ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)
  set(FWP_CARGO_MANIFEST ${FWP_SOURCE_ROOT}/bindings/rust/Cargo.toml)
  set(FWP_CARGO_ENV
      "FWP_LIB_DIR=$<TARGET_FILE_DIR:fwp>"
      "FWP_INCLUDE_DIR=${FWP_SOURCE_ROOT}/include"
      "CARGO_TARGET_DIR=${CMAKE_BINARY_DIR}/cargo"
      "CC=${CMAKE_C_COMPILER}")

  find_program(FWP_CARGO cargo HINTS $ENV{HOME}/.cargo/bin)
  if(FWP_CARGO)
    add_test(NAME bindings_rust_test
             COMMAND ${FWP_CARGO} test --offline --locked --manifest-path ${FWP_CARGO_MANIFEST} --workspace)
    add_test(NAME bindings_rust_doc
             COMMAND ${FWP_CARGO} doc --offline --locked --no-deps --manifest-path ${FWP_CARGO_MANIFEST} --workspace)
    add_test(NAME bindings_rust_example
             COMMAND ${FWP_CARGO} run --offline --locked --manifest-path ${FWP_CARGO_MANIFEST} -p fwp
                     --example retrieval -- --num-keys 6 --max-steps 300)
    add_test(NAME bindings_rust_example_lm
             COMMAND ${FWP_CARGO} run --offline --locked --manifest-path ${FWP_CARGO_MANIFEST} -p fwp
                     --example lm -- --steps 150 --out-dir ${CMAKE_CURRENT_BINARY_DIR})
    add_test(NAME bindings_rust_example_translation
             COMMAND ${FWP_CARGO} run --offline --locked --manifest-path ${FWP_CARGO_MANIFEST} -p fwp
                     --example translation -- --out-dir ${CMAKE_CURRENT_BINARY_DIR})
    add_test(NAME bindings_rust_example_distributed
             COMMAND ${FWP_CARGO} run --offline --locked --manifest-path ${FWP_CARGO_MANIFEST} -p fwp
                     --example distributed -- --ranks 2 --steps 150)
    set_tests_properties(bindings_rust_test bindings_rust_doc bindings_rust_example bindings_rust_example_lm
                         bindings_rust_example_translation bindings_rust_example_distributed PROPERTIES
      LABELS bindings
      ENVIRONMENT "${FWP_CARGO_ENV}"
      # One cargo at a time: they share CARGO_TARGET_DIR.
      RESOURCE_LOCK fwp_cargo
      TIMEOUT 900)
    set_property(TEST bindings_rust_doc APPEND PROPERTY ENVIRONMENT "RUSTDOCFLAGS=-D warnings")
    set_tests_properties(bindings_rust_example PROPERTIES
      PASS_REGULAR_EXPRESSION "final eval loss [0-9.]+ \\(best [0-9.]+\\) after [0-9]+ steps")
    set_tests_properties(bindings_rust_example_lm PROPERTIES PASS_REGULAR_EXPRESSION "greedy: +the cat [|].*saved .*fwp-lm-example[.]fwptok")
    set_tests_properties(bindings_rust_example_translation PROPERTIES
      PASS_REGULAR_EXPRESSION "the cat eats fish +-> el gato come pescado.*all 12 training sentences translated correctly")
    set_tests_properties(bindings_rust_example_distributed PROPERTIES
      PASS_REGULAR_EXPRESSION "replicas equal on all 2 ranks")
  else()
    # The echo succeeds and WILL_FAIL turns that into a failure that names the reason.
    add_test(NAME bindings_rust_test
             COMMAND ${CMAKE_COMMAND} -E echo "cargo not found: install Rust or configure with -DFWP_TEST_BINDINGS=OFF")
    set_tests_properties(bindings_rust_test PROPERTIES LABELS bindings WILL_FAIL ON)
  endif()

  find_program(FWP_PYTHON3 python3)
  if(FWP_PYTHON3)
    add_test(NAME bindings_check
             COMMAND ${FWP_PYTHON3} ${FWP_SOURCE_ROOT}/scripts/check_bindings.py --root ${FWP_SOURCE_ROOT})
    add_test(NAME bindings_generated
             COMMAND ${FWP_PYTHON3} ${FWP_SOURCE_ROOT}/scripts/gen_bindings.py --root ${FWP_SOURCE_ROOT} --check)
  else()
    add_test(NAME bindings_check
             COMMAND ${CMAKE_COMMAND} -E echo "python3 not found: the binding check cannot run")
    add_test(NAME bindings_generated
             COMMAND ${CMAKE_COMMAND} -E echo "python3 not found: the generated bindings cannot be checked")
    set_tests_properties(bindings_check bindings_generated PROPERTIES WILL_FAIL ON)
  endif()
  set_tests_properties(bindings_check bindings_generated PROPERTIES LABELS bindings)

  add_test(NAME bindings_abi
           COMMAND bash ${FWP_SOURCE_ROOT}/tests/abi_check.sh $<TARGET_FILE:fwp> ${FWP_SOURCE_ROOT}/include/fwp/fwp.h)
  set_tests_properties(bindings_abi PROPERTIES LABELS bindings ENVIRONMENT "CC=${CMAKE_C_COMPILER}")

  if(TARGET example_layer_training)
    # Exits non-zero unless training halved the loss and fwp_layer_step matched the forward pass.
    add_test(NAME bindings_example_layer_training COMMAND example_layer_training 300 1)
    set_tests_properties(bindings_example_layer_training PROPERTIES LABELS bindings)
  endif()
  if(TARGET example_translation)
    # Exits non-zero unless greedy and beam 4 translate every training sentence exactly.
    add_test(NAME bindings_example_translation
             COMMAND example_translation --out-dir ${CMAKE_CURRENT_BINARY_DIR})
    set_tests_properties(bindings_example_translation PROPERTIES LABELS bindings
      PASS_REGULAR_EXPRESSION "the cat eats fish +-> el gato come pescado.*all 12 training sentences translated correctly")
  endif()
endif()
