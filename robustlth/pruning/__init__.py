"""Ticket search: masks, pruning strategies, ticket files, IMP with rewinding, controls."""
from .controls import CONTROLS, make_control, perturb, random_prune, reinit
from .finder import (ImpRound, RoundResult, SearchResult, SearchSpec, SearchTraining, TicketSearch, TrainingResult,
                     convergence, default_search_lr, find_ticket, retrain_schedule, search_checkpoint,
                     search_defaults, search_training_hash)
from .masks import (apply_mask, conv_bn_pairs, count, dense_mask, full_mask, output_layer, prunable_weights,
                    sparsity_report)
from .rst import RST_METHODS, TRANSFORM_DEFAULTS, EtaSchedule, RSTConfig, RSTPenalty, cycle_sparsities, random_pick
from .rst_search import CycleResult, RstCycle
from .strategies import (STRATEGIES, GlobalMagnitude, GlobalNormalized, Layerwise, Movement, RandomPruning,
                         make_strategy)
from .ticket import Ticket, TicketError, TicketInfo, load_ticket, save_ticket, ticket_data_spec, ticket_model

__all__ = ["CONTROLS", "make_control", "perturb", "random_prune", "reinit", "ImpRound", "RoundResult",
           "SearchResult", "SearchSpec", "SearchTraining", "TicketSearch", "TrainingResult", "convergence",
           "default_search_lr", "find_ticket", "retrain_schedule", "search_checkpoint", "search_defaults",
           "search_training_hash", "apply_mask", "conv_bn_pairs", "count", "dense_mask", "full_mask", "output_layer",
           "prunable_weights", "sparsity_report", "STRATEGIES", "GlobalMagnitude", "GlobalNormalized",
           "Layerwise", "Movement", "RandomPruning", "make_strategy", "RST_METHODS", "TRANSFORM_DEFAULTS",
           "EtaSchedule", "RSTConfig", "RSTPenalty", "cycle_sparsities", "random_pick", "CycleResult", "RstCycle",
           "Ticket", "TicketError", "TicketInfo", "load_ticket", "save_ticket", "ticket_data_spec", "ticket_model"]
