"""Every metric name that can appear in a run's JSON, with one line saying what it is.

One source of truth: ``mi-catalog impls ID`` prints an implementation's metrics from here, and a test
checks every metric a run emits is declared in its ``IMPL.metrics`` and defined here. Add new names here
(keep them static: per-layer or per-head values belong in figures and tensors, not metric names).
Pure Python.

Conventions: probabilities are of the answer's first token at the last position; "effect" is the
normalised effect (p_patched − p_corrupt) / (p_clean − p_corrupt), 1 = the whole effect; layers follow
the one convention (block index, 0-based).
"""

from __future__ import annotations

GLOSSARY: dict[str, str] = {
    # --- shared
    "n_prompts": "Prompts the metrics are computed over.",
    "n_skipped": "Prompts left out (e.g. a contrast prompt of a different token length, or the model got it wrong).",
    "clean_prob": "Mean probability of the answer on the clean prompts.",
    "corrupt_prob": "Mean probability of the answer on the corrupted prompts (noise or contrast prompt).",
    "clean_accuracy": "Share of prompts whose greedy next token is the answer.",
    "noise_samples": "Noise draws per prompt (ROME uses 10), averaged before the interval is taken over prompts.",
    "noise_sigma": "Standard deviation of the corruption noise (noise_scale × std of the subject-token embeddings).",
    # --- logit lens / tuned lens
    "first_top1_layer": "First layer whose decoded residual (resid_post) has the answer as top-1 for most prompts; -1 if none.",
    "final_top1_rate": "Share of prompts whose answer is top-1 at the last layer (the model's own prediction).",
    "answer_prob_final": "Mean answer probability decoded from the last layer's residual.",
    "answer_prob_mid": "Mean answer probability decoded from the middle layer's residual (layer n_layers // 2).",
    # --- massive activations (Sun et al. 2024) and head output norms
    "massive_count": "Residual-stream activations (resid_post, real tokens) with |a| ≥ ratio × their token's median |a| and ≥ floor (paper: 1,000× and 100).",
    "massive_first_layer": "First layer with a massive activation; -1 if none.",
    "massive_max_abs": "Largest |activation| in the residual stream over layers, tokens and dimensions.",
    "massive_max_ratio": "Largest |activation| ÷ its token's median |activation| over layers, tokens and dimensions.",
    "massive_max_layer": "Layer where massive_max_ratio occurs.",
    "head_norm_top": "Mean norm of the largest-output head's write into the residual stream, ‖z_h W_O^h‖, over real positions and prompts.",
    "head_norm_median": "Median over heads of that mean output norm.",
    # --- language-specific neurons (LAPE, Tang et al. 2024)
    "lape_n_languages": "Languages (labels) the activation probabilities are compared across.",
    "lape_n_selected": "Neurons LAPE selects: the lowest activation-probability entropy (top_rate of all neurons) among those above the probability threshold.",
    "lape_prob_threshold": "Activation-probability threshold: the prob_quantile quantile of all P(act > 0) values.",
    "lape_own_drop": "Mean drop in p(answer) on held-out prompts of a language when that language's neurons are zeroed (pooled over languages).",
    "lape_other_drop": "Mean drop in p(answer) on held-out prompts of the other languages when one language's neurons are zeroed.",
    "lape_selectivity": "lape_own_drop − lape_other_drop (LAPE's claim: clearly positive).",
    "lape_own_accuracy_drop": "Drop in top-1 accuracy on a language's held-out prompts when its own neurons are zeroed.",
    "lape_other_accuracy_drop": "Drop in top-1 accuracy on the other languages' held-out prompts when one language's neurons are zeroed.",
    "lape_suppress_own_accuracy": "Held-out accuracy on the suppressed language's prompts (Spec.suppress, default the first) with its LAPE neurons zeroed (the Improve stage's after).",
    "lape_suppress_other_accuracy": "Held-out accuracy on the other languages' prompts with the suppressed language's neurons zeroed (its first side effect).",
    # --- FFN value vectors projected to the vocabulary (Geva et al. 2022)
    "ffn_top_neuron_score": "Best neuron's mean activation-weighted promotion of the answer, m_j · (W_U v_j)[answer] centred over the vocabulary, at the last token.",
    "ffn_top_layer": "Layer whose FFN (sum of its neurons' sub-updates) most promotes the answer directly.",
    "ffn_top_layer_score": "That FFN's mean direct promotion of the answer (centred logit; output bias excluded).",
    "ffn_topk_size": "How many top-ranked neurons the ffn_topk_* metrics and the figures cover.",
    "ffn_topk_answer_in_top_tokens": "Share of the top-k neurons whose top promoted tokens include one of the task's answer tokens.",
    "lens_kl_logit_mean": "Held-out KL(final ‖ logit lens) in nats, mean over all token positions and every layer but the last.",
    "lens_kl_tuned_mean": "Held-out KL(final ‖ tuned lens) in nats, mean over all token positions and every layer but the last.",
    "lens_kl_reduction": "1 − lens_kl_tuned_mean / lens_kl_logit_mean: how much of the logit lens' KL the trained translators remove.",
    "tuned_first_top1_layer": "First layer whose tuned-lens decoding has the answer as top-1 for most prompts; -1 if none.",
    "tuned_answer_prob_mid": "Mean answer probability from the tuned lens at the middle layer (n_layers // 2).",
    # --- linear probes (per layer, per head) and the difference-of-means direction
    "n_fit": "Prompts a probe, direction or translator is fitted on (the fit half of the held-out split).",
    "n_test": "Held-out prompts the fitted thing is scored on.",
    "probe_majority_rate": "Share of the held-out prompts in the larger class (the accuracy of always guessing it).",
    "probe_best_layer": "Layer whose residual-stream probe (resid_post, last token) has the highest held-out accuracy.",
    "probe_best_layer_accuracy": "Held-out accuracy of that layer's probe.",
    "probe_best_layer_auroc": "Held-out AUROC of that layer's probe.",
    "probe_best_head_accuracy": "Held-out accuracy of the best per-head probe (head_out, last token, as in ITI).",
    "probe_best_head_auroc": "Held-out AUROC of the best per-head probe.",
    "probe_control_accuracy": "Held-out accuracy at probe_best_layer of a probe fitted on shuffled labels (a control: should be near chance).",
    "diffmean_best_layer": "Layer whose difference-of-means direction (fit split) best separates the held-out classes as a 1-D score.",
    "diffmean_best_auroc": "Held-out AUROC of that difference-of-means score.",
    # --- activation patching (causal tracing)
    "resid_subject_last_peak_effect": "Largest mean normalised effect of restoring the residual at the last subject token (over layers).",
    "resid_subject_last_peak_layer": "Layer where restoring the residual at the last subject token helps most.",
    "resid_last_peak_effect": "Largest mean normalised effect of restoring the residual at the last token (over layers).",
    "resid_last_peak_layer": "Layer where restoring the residual at the last token helps most.",
    "mlp_subject_last_peak_effect": "Largest mean normalised effect of restoring one FFN output at the last subject token.",
    "mlp_subject_last_peak_layer": "Layer of that FFN output.",
    "head_top_effect": "Mean normalised effect of restoring the single best head (all positions).",
    "head_set_effect": "Mean normalised effect of restoring the top-k heads together (path/multi-head patching), k = head_set_size.",
    "head_set_size": "How many of the top-ranked heads head_set_effect restores together.",
    # --- ablation
    "ablation_top_drop": "Largest mean drop in answer probability from ablating one unit.",
    "ablation_set_drop": "Mean drop in answer probability from ablating the top-k units together.",
    "ablation_set_size": "How many top units ablation_set_drop ablates together.",
    "n_units": "Units (attention heads and/or FFN neurons) scored, each ablated on its own.",
    "ablation_top_head_drop": "Mean drop of the task metric (clean − ablated; the metric of clean_metric) when the best single head is ablated.",
    "ablation_top_neuron_drop": "Mean drop of the task metric when the best single FFN neuron (mlp_act) is ablated.",
    "ablation_heads_significant": "Heads whose 95 % bootstrap interval (over prompts) of the metric drop lies above 0.",
    "ablation_neurons_significant": "Neurons whose 95 % bootstrap interval (over prompts) of the metric drop lies above 0.",
    "ablation_head_set_drop": "Mean drop of the task metric when the top ablation_head_set_size heads are ablated together.",
    "ablation_head_set_size": "How many of the top-ranked heads ablation_head_set_drop ablates together.",
    # --- attribution patching (gradient × activation difference)
    "clean_metric": "Mean task metric on the clean prompts (logit difference answer − corrupt answer, or log p(answer) when the task names no corrupt answer; see notes).",
    "corrupt_metric": "Mean task metric on the corrupted prompts (contrast prompt, shuffled prompt, or subject-embedding noise).",
    "attr_top_head": "Attribution (a_clean − a_corrupt)·∂metric/∂a of the best head, ÷ the mean clean − corrupt metric gap.",
    "attr_heads_total": "Sum of all heads' attributions ÷ the gap (first-order estimate of patching every head output).",
    "attr_top_neuron": "Attribution of the best FFN neuron (mlp_act) ÷ the gap.",
    "attr_neurons_total": "Sum of all neurons' attributions ÷ the gap.",
    "attr_resid_peak": "Largest mean attribution of one residual-stream point (layer × position) ÷ the gap.",
    "forward_passes": "Forward passes the method used in total (all prompts batched).",
    "backward_passes": "Backward passes the method used in total (all prompts batched).",
    # --- edge attribution patching (circuit discovery)
    "n_edges": "Edges in the graph scored by EAP (upstream embeddings/heads/MLPs → downstream attention layers/MLPs/logits).",
    "circuit_edges": "Fewest top-|score| edges whose faithfulness reaches the threshold (Spec.threshold, default 0.8); -1 if none on the k grid.",
    "circuit_edge_fraction": "circuit_edges ÷ n_edges (-1 if the threshold is never reached).",
    "circuit_faithfulness": "(metric − corrupt) ÷ (clean − corrupt) with only the circuit's edges kept, every other edge patched from the corrupt run.",
    "circuit_heads": "Attention heads that send at least one edge of the circuit.",
    "faithfulness_top10": "Faithfulness with only the 10 top-|score| edges kept.",
    # --- knowledge neurons (integrated gradients)
    "n_facts": "Distinct facts (subject, relation, answer) among the prompts; a fact's prompts share its knowledge neurons.",
    "ig_steps": "Riemann steps of the integrated gradients (activation scaled from 0 to its value; the paper uses 20).",
    "kn_per_fact": "Mean number of knowledge neurons per fact (coarse in at least Spec.share of the fact's prompts).",
    "kn_suppress_change": "Mean relative change (p_after − p_before) ÷ p_before of p(answer) when the fact's knowledge neurons are zeroed at the last token.",
    "kn_suppress_change_random": "The same for as many random neurons from the same layers (averaged over draws).",
    "kn_amplify_change": "Mean relative change of p(answer) when the knowledge neurons are amplified (× Spec.amplify, default 2) at the last token.",
    "kn_amplify_change_random": "The same for as many random neurons from the same layers.",
    # --- refusal direction (Arditi et al. 2024): difference of means, directional ablation, activation addition
    "n_val": "Prompts of the fit half held out to choose among the fitted candidates (validation).",
    "direction_layer": "Layer l whose block input (resid_pre.l) gives the chosen difference-of-means direction.",
    "direction_position": "Token position of the chosen direction, counted from the end (-1 = last token).",
    "direction_norm": "Norm of the chosen difference-of-means vector (the vector that activation addition adds).",
    "n_candidates_kept": "Candidate directions (layer × position) passing the validation filters (KL on harmless prompts below the limit, addition induces the behaviour, not in the last layers).",
    "refusal_rate_before": "Share of held-out harmful (behaviour-class) prompts whose greedy next token is a refusal token, unsteered.",
    "refusal_rate_ablated": "The same with the direction ablated from every residual-stream read and write.",
    "harmless_accuracy_before": "Share of held-out harmless (other-class) prompts whose greedy next token is their answer, unsteered.",
    "harmless_accuracy_ablated": "The same with the direction ablated.",
    "harmless_refusal_before": "Share of held-out harmless prompts whose greedy next token is a refusal token, unsteered.",
    "harmless_refusal_added": "The same with the direction added (activation addition at its layer, every position).",
    "kl_harmless_ablated": "Mean KL(unsteered ‖ ablated) of next-token distributions on the held-out harmless prompts (all real positions).",
}

