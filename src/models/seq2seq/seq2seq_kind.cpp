#include "models/seq2seq/seq2seq_kind.h"

#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/registry.h"
#include "models/seq2seq/seq2seq_model.h"

namespace fwp {

void register_seq2seq_model(ModelRegistry& registry) {
  registry.add(
      "seq2seq",
      [](const std::shared_ptr<Context>& context, const nlohmann::json& config) {
        return std::shared_ptr<Model>(std::make_shared<Seq2SeqModel>(context, Seq2SeqConfig::from_json(config)));
      },
      [](const nlohmann::json& config) {
        std::vector<ParameterShape> shapes;
        for (auto& s : seq2seq_parameter_shapes(Seq2SeqConfig::from_json(config))) shapes.push_back({s.first, s.second});
        return shapes;
      });
}

}  // namespace fwp
