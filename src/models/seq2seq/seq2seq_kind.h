// The translation model's entry in the registry of model kinds (models/registry.h).
#pragma once

namespace fwp {

class ModelRegistry;

// Adds kind "seq2seq": a Seq2SeqModel built from Seq2SeqConfig::from_json().
void register_seq2seq_model(ModelRegistry& registry);

}  // namespace fwp
